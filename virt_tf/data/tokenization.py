"""Tokenizer and packer built on tensorflow-text (runs inside the TF graph).

`BertPairPreprocessor` turns a batch of string pairs into three id packings
that share the *same* truncated word pieces (SPEC: token alignment):

* ``pair``:   `[CLS] x [SEP] y [SEP]` with segment ids 0/1 (the teacher's input);
* ``text_a``: `[CLS] x [SEP]`; ``text_b``: `[CLS] y [SEP]` (the student's inputs).

Every packing is a dict of int32 tensors `input_word_ids`, `input_mask`,
`input_type_ids`, `[batch, seq]`, padded to the longest member of the batch.
The model only ever sees ids: no tensorflow-text op enters a model graph.
"""
import tensorflow as tf
import tensorflow_text as tf_text

from virt_tf.errors import DataError


def read_vocab(vocab_file):
    """The word pieces of a BERT ``vocab.txt``, one a line, in id order."""
    with tf.io.gfile.GFile(vocab_file) as f:
        return [line.rstrip("\n") for line in f]


class BertPairPreprocessor(tf.Module):
    """WordPiece tokenizer (tensorflow-text) + longest-first pair truncation + packing.

    Args:
      vocab_file: BERT `vocab.txt`.
      lower_case: lower-case and strip accents (as the checkpoint says).
      max_seq_length: length budget of the *pair* packing, specials included.
    """

    def __init__(self, vocab_file, lower_case=True, max_seq_length=128, name=None):
        super().__init__(name=name)
        if max_seq_length < 5:
            raise ValueError(f"max_seq_length must be at least 5, got {max_seq_length}")
        self.vocab_file = vocab_file
        self.lower_case = lower_case
        self.max_seq_length = max_seq_length
        vocab = read_vocab(vocab_file)
        for token in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
            if token not in vocab:
                raise DataError(f"{vocab_file}: vocabulary has no {token}")
        self.vocab_size = len(vocab)
        self.cls_id = vocab.index("[CLS]")
        self.sep_id = vocab.index("[SEP]")
        self.pad_id = vocab.index("[PAD]")
        init = tf.lookup.KeyValueTensorInitializer(
            keys=tf.constant(vocab), values=tf.range(len(vocab), dtype=tf.int64))
        self._table = tf.lookup.StaticVocabularyTable(init, num_oov_buckets=1)
        self.tokenizer = tf_text.BertTokenizer(
            self._table, token_out_type=tf.int64, lower_case=lower_case,
            unknown_token="[UNK]")
        self.trimmer = tf_text.ShrinkLongestTrimmer(max_seq_length - 3, axis=-1)

    @property
    def vocab_table(self):
        """The word-piece lookup table (a resource a SavedModel of these graphs must track)."""
        return self._table

    def tokenize(self, texts):
        """`[batch]` strings -> ragged `[batch, (pieces)]` int64 word-piece ids."""
        return self.tokenizer.tokenize(texts).merge_dims(-2, -1)

    def _pack(self, segments):
        ids, types = tf_text.combine_segments(
            segments, start_of_sequence_id=self.cls_id, end_of_segment_id=self.sep_id)
        word_ids = tf.cast(ids.to_tensor(default_value=self.pad_id), tf.int32)
        mask = tf.cast(tf.ones_like(ids).to_tensor(default_value=0), tf.int32)
        type_ids = tf.cast(types.to_tensor(default_value=0), tf.int32)
        return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}

    def truncate(self, text_a, text_b):
        """Tokenize and truncate a pair once, longest first: ragged `(x, y)` pieces."""
        a, b = self.trimmer.trim([self.tokenize(text_a), self.tokenize(text_b)])
        return a, b

    def pack(self, a, b):
        """Truncated pieces (ragged `[batch, (pieces)]`) -> the ``pair``, ``text_a`` and
        ``text_b`` packings, each padded to its own longest member."""
        return {"pair": self._pack([a, b]), "text_a": self._pack([a]),
                "text_b": self._pack([b])}

    # autograph=False (here and in the dataset maps): tensorflow-text builds its own graph
    # loops, and converting its Python source cost seconds in every process
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                  tf.TensorSpec([None], tf.string)], autograph=False)
    def __call__(self, text_a, text_b):
        a, b = self.truncate(text_a, text_b)
        return self.pack(a, b)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    def single(self, texts):
        """One text alone, `[CLS] x [SEP]`, truncated to `max_seq_length`."""
        pieces = self.tokenize(texts)[:, : self.max_seq_length - 2]
        return self._pack([pieces])

    def count_truncated(self, text_a, text_b):
        """How many of the pairs are longer than the pair budget (for the log)."""
        a, b = self.tokenize(text_a), self.tokenize(text_b)
        total = a.row_lengths() + b.row_lengths() + 3
        return int(tf.reduce_sum(tf.cast(total > self.max_seq_length, tf.int32)))
