"""Optimizer of paper section 4.3.2: Adam with linear warmup then linear decay; and the two
options about the word-embedding table (half of MiniLM-L6's parameters), which Keras' Adam
updates densely at every step although a batch reads a few hundred of its rows:

* `freeze_word_embeddings`: the table leaves the trainable variables (no gradient, no
  Adam moments, no update);
* `LazyAdam` (``embedding_updates: lazy``): Adam whose update of a variable with a sparse
  gradient (`tf.IndexedSlices`, what `tf.gather` of a table gives) reads and writes only
  the rows present in the batch: their moments and their values. A row absent from a
  batch keeps its moments and its value (dense Adam would still move it by its decaying
  momentum); a row present at every step follows dense Adam exactly.
"""
import keras
import tensorflow as tf

# The `BertEmbeddings` weight that holds the word-piece vectors `[vocab_size, hidden]`.
WORD_EMBEDDINGS = "word_embeddings"


@keras.saving.register_keras_serializable(package="virt_tf")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to ``peak`` over ``warmup_steps``, then linear decay to 0."""

    def __init__(self, peak, total_steps, warmup_steps):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self._decay = keras.optimizers.schedules.PolynomialDecay(
            self.peak, max(1, self.total_steps - self.warmup_steps), end_learning_rate=0.0,
            power=1.0)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * step / max(1, self.warmup_steps)
        decayed = self._decay(keras.ops.maximum(step - self.warmup_steps, 0.0))
        return keras.ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="virt_tf")
class LazyAdam(keras.optimizers.Adam):
    """Keras' Adam, but a sparse gradient updates only the rows it names (see the module
    docstring). Dense gradients take Keras' own `update_step`, unchanged. A sparse one's
    rows follow Keras' Adam on that same `tf.IndexedSlices`: a row read k times in the batch
    (a word piece twice in a text) adds the sum of its k slices to the first moment and the
    sum of their *squares* to the second (Keras 3 squares the slices before summing them,
    not the summed row: such a row takes a step up to sqrt(k) times larger than with the
    square of the sum)."""

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices) or self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        rows, position = tf.unique(gradient.indices)
        values = tf.cast(gradient.values, dtype)
        grad = tf.math.unsorted_segment_sum(values, position, tf.shape(rows)[0])
        # as Keras' Adam squares a sparse gradient: slice by slice, then summed
        grad_squared = tf.math.unsorted_segment_sum(tf.square(values), position,
                                                    tf.shape(rows)[0])
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        lr = tf.cast(learning_rate, dtype)
        # the same arithmetic as Keras' Adam.update_step, on the gathered rows
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        m_rows = tf.gather(m.value, rows)
        v_rows = tf.gather(v.value, rows)
        # 1 - beta in Python floats, as Keras computes them
        m_rows = m_rows + (grad - m_rows) * (1 - self.beta_1)
        v_rows = v_rows + (grad_squared - v_rows) * (1 - self.beta_2)
        shape = tf.shape(variable, out_type=rows.dtype)
        self.assign(m, tf.IndexedSlices(m_rows, rows, shape))
        self.assign(v, tf.IndexedSlices(v_rows, rows, shape))
        self.assign_sub(variable, tf.IndexedSlices(
            m_rows * alpha / (tf.sqrt(v_rows) + self.epsilon), rows, shape))
        return None


def create_optimizer(learning_rate, total_steps, warmup_ratio=0.1, epsilon=1e-8,
                     beta_1=0.9, beta_2=0.999, clipnorm=None, embedding_updates="dense"):
    """Adam (``embedding_updates="lazy"``: `LazyAdam`) over `WarmupLinearDecay`."""
    schedule = WarmupLinearDecay(learning_rate, total_steps, int(warmup_ratio * total_steps))
    adam = {"dense": keras.optimizers.Adam, "lazy": LazyAdam}[embedding_updates]
    return adam(learning_rate=schedule, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                clipnorm=clipnorm)


def freeze_word_embeddings(classifier):
    """Make the word-embedding table of ``classifier``'s encoder non-trainable; returns the
    variables frozen (one a `BertEncoder`; none for a model without one)."""
    frozen = [v for v in classifier.weights if v.path.split("/")[-1] == WORD_EMBEDDINGS]
    for variable in frozen:
        variable.trainable = False
    return frozen
