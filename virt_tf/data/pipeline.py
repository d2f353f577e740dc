"""tf.data pipelines: text pairs -> per-batch padded id packings.

Training tokenizes every pair once (`TokenizedPairs`: the word pieces after
the one longest-first truncation), then streams batches of example indices
planned in numpy (`batch_plan`): a seeded permutation per epoch
(`epoch_order`) and, by default, length bucketing (pairs of similar length
share a batch, so little of each batch is padding). The plan is a pure
function of the seed, so batch ``k`` is the same in every run of the same
seed and a resumed run starts at its step with the same data.
"""
import numpy as np
import tensorflow as tf

from virt_tf.data.tasks import Example

# Length bucketing: a window of this many batches of the epoch's permutation is
# sorted by length and cut into batches; the epoch's batches are then shuffled.
BUCKET_WINDOW_BATCHES = 50
# Models that read x and y apart: the window is sorted by x's length, then each group
# of this many batches by y's (both packings stay tight; measured on MNLI: x + y
# positions a pair 55.5 -> 48.5 against sorting by the pair's length).
TEXTS_GROUP_BATCHES = 4
BUCKET_KEYS = ("pair", "texts")


def _columns(examples):
    """Text and label columns of `Example`s or of unlabelled ``(text_a, text_b)`` pairs."""
    if examples and isinstance(examples[0], (tuple, list)):
        examples = [Example(str(a), str(b), 0) for a, b in examples]
    a = np.array([e.text_a for e in examples], dtype=object)
    b = np.array([e.text_b for e in examples], dtype=object)
    y = np.array([e.label for e in examples], dtype=np.int32)
    return a, b, y


class TokenizedPairs:
    """Every pair's word pieces, truncated once: ragged ``a``/``b`` int64 `[n, (pieces)]`,
    ``labels`` int32 `[n]` (-1: no gold label), and ``lengths`` (the pair packing's
    length, specials included). ``teacher_logits`` (`[n, num_labels]` float32, or None)
    are a frozen teacher's logits of each pair (`virt_tf.data.teacher_logits`); when
    set, every batch carries its rows as ``features["teacher_logits"]``."""

    def __init__(self, a, b, labels):
        self.a, self.b = a, b
        self.teacher_logits = None
        self.labels = np.asarray(labels, np.int32)
        self.lengths_a = (a.row_lengths().numpy() + 2).astype(np.int64)  # [CLS] x [SEP]
        self.lengths_b = (b.row_lengths().numpy() + 2).astype(np.int64)
        self.lengths = self.lengths_a + self.lengths_b - 1  # [CLS] x [SEP] y [SEP]

    def sort_lengths(self, key):
        """What `batch_plan` sorts on: the pair's length, or (x's, y's) for ``texts``."""
        if key not in BUCKET_KEYS:
            raise ValueError(f"bucket key must be one of {BUCKET_KEYS}, got {key!r}")
        return self.lengths if key == "pair" else np.stack([self.lengths_a, self.lengths_b], 1)

    def __len__(self):
        return len(self.labels)

    @classmethod
    def from_examples(cls, examples, preprocessor, chunk=4096):
        a_text, b_text, labels = _columns(examples)
        parts_a, parts_b = [], []
        for i in range(0, len(labels), chunk):
            pa, pb = preprocessor.truncate(tf.constant(a_text[i:i + chunk].astype(str)),
                                           tf.constant(b_text[i:i + chunk].astype(str)))
            parts_a.append(pa)
            parts_b.append(pb)
        if not parts_a:
            empty = tf.RaggedTensor.from_row_lengths(tf.zeros([0], tf.int64),
                                                     tf.zeros([0], tf.int64))
            return cls(empty, empty, labels)
        return cls(tf.concat(parts_a, axis=0), tf.concat(parts_b, axis=0), labels)


def epoch_order(n, epochs, seed):
    """Example indices for ``epochs`` passes, each a seeded permutation (resumable)."""
    rng = np.random.RandomState(seed)
    return np.concatenate([rng.permutation(n) for _ in range(epochs)])


def steps_per_epoch(num_examples, batch_size):
    """Full batches an epoch (the last partial batch is dropped); one short batch when
    there are fewer examples than a batch."""
    return max(1, num_examples // batch_size)


def batch_plan(lengths, batch_size, epochs, seed, bucket=True,
               window=BUCKET_WINDOW_BATCHES):
    """Example indices of every training batch: int `[epochs * steps_per_epoch, batch_size]`.

    Each epoch takes its seeded permutation (`epoch_order`; the last partial batch
    is dropped). With ``bucket``, each window of ``window`` batches of it is
    sorted by length (stable) and cut into batches, and the epoch's batches are
    put in a seeded random order: every example is still seen once an epoch, and
    batches hold pairs of similar length. ``lengths`` is `[n]` (the pair's length)
    or `[n, 2]` (x's and y's: sorted by x's, then each group of
    `TEXTS_GROUP_BATCHES` batches by y's).
    """
    n = len(lengths)
    spe = steps_per_epoch(n, batch_size)
    if n < batch_size:  # one short batch an epoch
        order = epoch_order(n, epochs, seed).reshape(epochs, n)
        return order
    order = epoch_order(n, epochs, seed).reshape(epochs, n)[:, :spe * batch_size]
    if not bucket:
        return order.reshape(epochs * spe, batch_size)
    rng = np.random.RandomState([seed, 1])
    lengths = np.asarray(lengths)
    group = TEXTS_GROUP_BATCHES * batch_size
    plans = []
    for e in range(epochs):
        batches = []
        for start in range(0, spe * batch_size, window * batch_size):
            chunk = order[e, start:start + window * batch_size]
            if lengths.ndim == 1:
                chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            else:
                chunk = chunk[np.argsort(lengths[chunk, 0], kind="stable")]
                chunk = np.concatenate([
                    part[np.argsort(lengths[part, 1], kind="stable")]
                    for part in np.split(chunk, range(group, len(chunk), group))])
            batches.extend(chunk.reshape(-1, batch_size))
        plans.append(np.stack(batches)[rng.permutation(spe)])
    return np.concatenate(plans)


def padding_share(lengths, plan):
    """Share of the pair packings' positions that are padding under ``plan``."""
    lengths = np.asarray(lengths)
    per_batch = lengths[plan]
    padded = per_batch.max(axis=1, keepdims=True) * per_batch.shape[1]
    return float(1.0 - per_batch.sum() / padded.sum())


def training_stream(examples, preprocessor, batch_size, epochs, seed, start_step=0,
                    bucket=True, bucket_key="pair"):
    """The whole training run as one deterministic stream of batches.

    ``examples`` are `Example`s or a `TokenizedPairs` (tokenize once, reuse across
    resumes). Batch ``k`` is the same in every run of the same seed, so a resumed
    run starts at ``start_step`` with the same data. ``bucket_key``: ``pair`` for a
    model that reads the packed pair, ``texts`` for one that reads x and y apart.
    Yields `(features, labels)`; features as `BertPairPreprocessor.__call__`.
    """
    pairs = (examples if isinstance(examples, TokenizedPairs)
             else TokenizedPairs.from_examples(examples, preprocessor))
    plan = batch_plan(pairs.sort_lengths(bucket_key), batch_size, epochs, seed, bucket)
    return plan_stream(pairs, preprocessor, plan[start_step:])


def plan_stream(pairs, preprocessor, plan):
    """Batches of `TokenizedPairs` ``pairs``, one per row of ``plan`` (`[steps, batch]`
    indices, e.g. the rows of `batch_plan` from a resumed step on), packed by
    ``preprocessor``. Yields `(features, labels)`."""
    a, b, labels = pairs.a, pairs.b, tf.constant(pairs.labels)
    logits = None if pairs.teacher_logits is None else tf.constant(pairs.teacher_logits)

    @tf.autograph.experimental.do_not_convert  # graph ops only (see BertPairPreprocessor)
    def make(indices):
        features = preprocessor.pack(tf.gather(a, indices), tf.gather(b, indices))
        if logits is not None:
            features["teacher_logits"] = tf.gather(logits, indices)
        return features, tf.gather(labels, indices)

    ds = tf.data.Dataset.from_tensor_slices(plan.astype(np.int64))
    ds = ds.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(examples, preprocessor, batch_size, sort_by_length=True):
    """Evaluation batches; sorted by length (less padding) unless told otherwise.

    Returns `(dataset, order)`: ``order[i]`` is the index in ``examples`` of the
    i-th row the dataset yields, to map predictions back.
    """
    a, b, y = _columns(examples)
    order = np.arange(len(examples))
    if sort_by_length:
        lengths = np.array([len(x) + len(z) for x, z in zip(a, b)])
        order = np.argsort(lengths, kind="stable")
    ds = tf.data.Dataset.from_tensor_slices((a[order].astype(str), b[order].astype(str),
                                             y[order]))
    ds = ds.batch(batch_size).map(lambda ta, tb, lab: (preprocessor(ta, tb), lab),
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE), order
