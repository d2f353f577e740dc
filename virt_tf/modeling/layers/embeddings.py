"""BERT input embeddings: word + learned absolute position + segment, then LayerNorm."""
import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="virt_tf")
class BertEmbeddings(keras.layers.Layer):
    """Sum of word, position and type embeddings followed by LayerNorm and dropout.

    Inputs: ``word_ids`` and ``type_ids``, int `[batch, seq]`.
    Output: float `[batch, seq, hidden]`.
    """

    def __init__(self, vocab_size, hidden_size, max_position_embeddings=512,
                 type_vocab_size=2, dropout_rate=0.1, initializer_range=0.02,
                 layer_norm_epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.dropout_rate = dropout_rate
        self.initializer_range = initializer_range
        self.layer_norm_epsilon = layer_norm_epsilon
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, name="layer_norm")
        self._dropout = keras.layers.Dropout(dropout_rate)

    def build(self, input_shape):
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        self.word_embeddings = self.add_weight(
            name="word_embeddings", shape=(self.vocab_size, self.hidden_size), initializer=init)
        self.position_embeddings = self.add_weight(
            name="position_embeddings",
            shape=(self.max_position_embeddings, self.hidden_size), initializer=init)
        self.type_embeddings = self.add_weight(
            name="type_embeddings", shape=(self.type_vocab_size, self.hidden_size),
            initializer=init)
        self.layer_norm.build((None, None, self.hidden_size))
        super().build(input_shape)

    def call(self, word_ids, type_ids=None, training=False):
        seq = tf.shape(word_ids)[1]
        tf.debugging.assert_less_equal(
            seq, self.max_position_embeddings,
            message="sequence longer than max_position_embeddings")
        x = tf.gather(self.word_embeddings, word_ids)
        x = x + self.position_embeddings[None, :seq, :]
        if type_ids is None:
            type_ids = tf.zeros_like(word_ids)
        x = x + tf.gather(self.type_embeddings, type_ids)
        return self._dropout(self.layer_norm(x), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                      max_position_embeddings=self.max_position_embeddings,
                      type_vocab_size=self.type_vocab_size, dropout_rate=self.dropout_rate,
                      initializer_range=self.initializer_range,
                      layer_norm_epsilon=self.layer_norm_epsilon)
        return config
