"""Training: one resumable stage (`stage.run_stage`), its callbacks and resume checks, the
teacher -> student pipeline, the optimizer, precision policies, tf.distribute strategies and
the writes that fail without losing anything. Nothing here reads command-line flags."""
