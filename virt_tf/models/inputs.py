"""Placeholder id packings used to build a model's variables."""
import tensorflow as tf


def dummy_features(batch=2, seq=5):
    """`{"pair", "text_a", "text_b"}` packings of `[batch, seq]` ids (all valid)."""
    ids = tf.ones((batch, seq), tf.int32) * 100
    packing = {"input_word_ids": ids, "input_mask": tf.ones_like(ids),
               "input_type_ids": tf.zeros_like(ids)}
    return {"pair": packing, "text_a": packing, "text_b": packing}
