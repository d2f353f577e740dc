"""The interface every online head implements."""
import keras
import tensorflow as tf


class PairHead(keras.layers.Layer):
    """Base of the online heads.

    Call: ``head(states_a, mask_a, states_b, mask_b, training=False)`` with
      ``states_a`` `[batch, m, d]` and ``mask_a`` `[batch, m]` (0/1) for x,
      ``states_b`` `[batch, n, d]` and ``mask_b`` `[batch, n]` for y,
    returns logits `[batch, num_labels]`. The states are x's and y's last-layer
    states, each encoded without seeing the other text (cacheable offline).

    Subclasses implement `build(input_shape)` (the shape of ``states_a``) and
    `logits(...)`; `call` casts every input to the layer's compute dtype first
    (Keras casts only the first argument under a mixed-precision policy).

    ``RUN_OPTIONS`` lists the head's ``(constructor argument, run option)`` pairs: the
    options of `virt_tf.options.RunOptions` it is built from (`from_options`). A new head
    option is a field of that schema and an entry here, in the head's file.
    """
    RUN_OPTIONS = ()

    def __init__(self, num_labels, dropout_rate=0.1, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.num_labels = int(num_labels)
        self.dropout_rate = float(dropout_rate)
        self.initializer_range = float(initializer_range)

    @classmethod
    def from_options(cls, num_labels, encoder_config, options, **kwargs):
        """The head of a run: ``options`` (a mapping of every run option) gives the
        ``RUN_OPTIONS`` and the dropout, ``encoder_config`` the initializer's range."""
        args = {arg: options[name] for arg, name in cls.RUN_OPTIONS}
        return cls(num_labels, dropout_rate=options["dropout_rate"],
                   initializer_range=encoder_config.initializer_range, **args, **kwargs)

    def initializer(self):
        return keras.initializers.TruncatedNormal(stddev=self.initializer_range)

    def call(self, states_a, mask_a, states_b, mask_b, training=False):
        dtype = self.compute_dtype
        return self.logits(tf.cast(states_a, dtype), mask_a, tf.cast(states_b, dtype), mask_b,
                           training=training)

    def logits(self, states_a, mask_a, states_b, mask_b, training=False):
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(num_labels=self.num_labels, dropout_rate=self.dropout_rate,
                      initializer_range=self.initializer_range)
        return config
