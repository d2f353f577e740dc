"""Task readers, the tensorflow-text preprocessor, and tf.data pipelines (knows no model)."""
