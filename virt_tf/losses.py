"""Losses: VIRT attention-map distillation (paper Eq. 5-7) and logit distillation.

Each loss is a plain function of tensors (no model inside), plus a small
callable class wrapping it so losses can be swapped in a model's config.
"""
import math

import tensorflow as tf

from virt_tf.modeling.layers.attention import attention_bias

NORMS = ("squared", "frobenius", "kl")


def content_lengths(mask):
    """Number of content pieces of a `[CLS] x [SEP]` packing: valid positions minus 2."""
    return tf.maximum(tf.reduce_sum(tf.cast(mask, tf.int32), axis=1) - 2, 0)


def teacher_cross_scores(scores, m, n, mx, ny):
    """Off-diagonal blocks of the teacher's raw scores, re-indexed to content pieces.

    The teacher input is `[CLS] x [SEP] y [SEP]`: x's pieces sit at positions
    `1..m`, y's at `m+2..m+n+1` (m, n vary per example).

    Args:
      scores: `[batch, heads, T, T]` raw scores of one teacher layer.
      m, n: int `[batch]` content lengths of x and y.
      mx, ny: the padded content widths (max of m and n in the batch).
    Returns:
      `S_xy` `[batch, heads, mx, ny]` and `S_yx` `[batch, heads, ny, mx]` (Eq. 3-4).
      Rows/columns past m or n hold arbitrary values and must be masked.
    """
    t = tf.shape(scores)[-1]
    x_pos = tf.minimum(1 + tf.range(mx), t - 1)                                   # [mx]
    y_pos = tf.minimum(m[:, None] + 2 + tf.range(ny)[None, :], t - 1)             # [b, ny]
    x_rows = tf.gather(scores, x_pos, axis=2)                                     # [b,h,mx,T]
    s_xy = tf.gather(x_rows, y_pos, axis=3, batch_dims=1)                         # [b,h,mx,ny]
    y_rows = tf.gather(scores, y_pos, axis=2, batch_dims=1)                       # [b,h,ny,T]
    s_yx = tf.gather(y_rows, x_pos, axis=3)                                       # [b,h,ny,mx]
    return s_xy, s_yx


def _masked_softmax(scores, key_valid):
    return tf.nn.softmax(scores + attention_bias(key_valid, scores.dtype), axis=-1)


def _map_distance(student, teacher, row_valid, norm):
    """Per-example `sum_h ||student - teacher||` over valid rows: `[batch]`.

    ``kl``: `sum_h sum_rows KL(teacher_row || student_row)` instead of a norm (the
    per-row KL between attention distributions with which MiniLM distils attention);
    masked columns hold ~0 in both maps and add nothing.
    """
    if norm == "kl":
        log_t = tf.math.log(tf.maximum(teacher, 1e-12))
        log_s = tf.math.log(tf.maximum(student, 1e-12))
        kl = tf.reduce_sum(teacher * (log_t - log_s), axis=-1)  # [b, h, rows]
        return tf.reduce_sum(kl * tf.cast(row_valid, kl.dtype)[:, None, :], axis=[1, 2])
    sq = tf.square(student - teacher) * tf.cast(row_valid, student.dtype)[:, None, :, None]
    if norm == "squared":
        return tf.reduce_sum(sq, axis=[1, 2, 3])
    per_head = tf.sqrt(tf.reduce_sum(sq, axis=[2, 3]) + 1e-12)
    return tf.reduce_sum(per_head, axis=1)


def virt_loss(student_queries_x, student_keys_x, student_queries_y, student_keys_y,
              teacher_scores, mask_x, mask_y, norm="squared", layers=None):
    """L_virt of paper Eq. 7, averaged over the batch.

    Student maps (Eq. 5): `softmax_y(Qx Ky^T / sqrt(d_head))` and
    `softmax_x(Qy Kx^T / sqrt(d_head))` from the student's own Siamese
    queries and keys of each layer. Teacher maps (Eq. 6): the x-rows/y-columns
    (and y-rows/x-columns) block of the teacher's raw scores, re-softmaxed.
    Only content pieces take part (no [CLS]/[SEP]); padding is masked.

    `L = 1/(2L) sum_l [ 1/m sum_h ||Mt_xy - M_xy||^2 + 1/n sum_h ||Mt_yx - M_yx||^2 ]`
    with the squared Frobenius norm by default (``norm="frobenius"`` uses the
    plain norm of the paper's text; ``norm="kl"`` the per-row KL(teacher || student)
    summed over rows and heads, a form beyond the paper).

    Args:
      student_queries_x, student_keys_x: lists over layers of `[batch, heads, Lx, d_head]`
        from the student encoding `[CLS] x [SEP]`.
      student_queries_y, student_keys_y: the same for `[CLS] y [SEP]`, `[batch, heads, Ly, d_head]`.
      teacher_scores: list over layers of `[batch, heads, T, T]` raw teacher scores of
        `[CLS] x [SEP] y [SEP]` built from the same truncated pieces.
      mask_x, mask_y: `[batch, Lx]`, `[batch, Ly]` student input masks.
      norm: ``squared``, ``frobenius`` or ``kl``.
      layers: optional student layer indices to distil (default: all).
    Returns: scalar loss (`virt_loss_per_example` gives the `[batch]` values it averages).
    """
    return tf.reduce_mean(virt_loss_per_example(
        student_queries_x, student_keys_x, student_queries_y, student_keys_y, teacher_scores,
        mask_x, mask_y, norm=norm, layers=layers))


def virt_loss_per_example(student_queries_x, student_keys_x, student_queries_y,
                          student_keys_y, teacher_scores, mask_x, mask_y, norm="squared",
                          layers=None):
    """Eq. 7 per example, `[batch]` float32: `virt_loss` before the batch mean.

    The student's lists may be shorter than the teacher's (a model that encodes
    x and y apart in its lower layers only, e.g. DeFormer): student layer ``l``
    is compared with teacher layer ``l``. Queries and keys are used in float32
    whatever the compute precision.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    num_layers = len(student_queries_x)
    if len(teacher_scores) < num_layers:
        raise ValueError(f"teacher has {len(teacher_scores)} layers, student {num_layers}: "
                         "the paper's setting needs equal depth")
    layers = list(range(num_layers)) if layers is None else list(layers)
    m = content_lengths(mask_x)
    n = content_lengths(mask_y)
    mx = tf.maximum(tf.shape(mask_x)[1] - 2, 1)
    ny = tf.maximum(tf.shape(mask_y)[1] - 2, 1)
    x_valid = tf.range(mx)[None, :] < m[:, None]
    y_valid = tf.range(ny)[None, :] < n[:, None]
    inv_m = 1.0 / tf.cast(tf.maximum(m, 1), tf.float32)
    inv_n = 1.0 / tf.cast(tf.maximum(n, 1), tf.float32)
    total = tf.zeros_like(inv_m)
    bad = [l for l in layers if not 0 <= l < num_layers]
    if bad:
        raise ValueError(f"layers {bad} to distil are outside the student's {num_layers} "
                         "layers encoded apart")
    f32 = lambda t: tf.cast(t, tf.float32)  # noqa: E731
    for l in layers:
        qx = f32(student_queries_x[l][:, :, 1:1 + mx])
        kx = f32(student_keys_x[l][:, :, 1:1 + mx])
        qy = f32(student_queries_y[l][:, :, 1:1 + ny])
        ky = f32(student_keys_y[l][:, :, 1:1 + ny])
        scale = 1.0 / math.sqrt(qx.shape[-1])
        st_xy = _masked_softmax(tf.matmul(qx, ky, transpose_b=True) * scale, y_valid)
        st_yx = _masked_softmax(tf.matmul(qy, kx, transpose_b=True) * scale, x_valid)
        s_xy, s_yx = teacher_cross_scores(f32(tf.stop_gradient(teacher_scores[l])), m, n, mx, ny)
        t_xy = _masked_softmax(s_xy, y_valid)
        t_yx = _masked_softmax(s_yx, x_valid)
        total += inv_m * _map_distance(st_xy, t_xy, x_valid, norm)
        total += inv_n * _map_distance(st_yx, t_yx, y_valid, norm)
    return total / (2.0 * len(layers))


def logit_distillation_loss(student_logits, teacher_logits, temperature=1.0):
    """DSE-style distillation (seed 002): KL(teacher || student) of tempered softmaxes, x T^2."""
    return tf.reduce_mean(logit_distillation_per_example(student_logits, teacher_logits,
                                                         temperature))


def logit_distillation_per_example(student_logits, teacher_logits, temperature=1.0):
    """`logit_distillation_loss` before the batch mean: `[batch]` float32."""
    teacher_logits = tf.cast(tf.stop_gradient(teacher_logits), tf.float32)
    student_logits = tf.cast(student_logits, tf.float32)
    t = tf.nn.softmax(teacher_logits / temperature, axis=-1)
    log_s = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    log_t = tf.math.log(tf.maximum(t, 1e-12))
    return tf.reduce_sum(t * (log_t - log_s), axis=-1) * temperature ** 2


def logit_mse_per_example(student_logits, teacher_logits):
    """Mean squared difference of the logits over the classes: `[batch]` float32.

    Logit matching (no softmax, no temperature): the student regresses the teacher's
    logits, offsets included.
    """
    teacher_logits = tf.cast(tf.stop_gradient(teacher_logits), tf.float32)
    return tf.reduce_mean(tf.square(tf.cast(student_logits, tf.float32) - teacher_logits),
                          axis=-1)


def labelled_mask(labels):
    """`[batch]` float32: 1 for pairs with a gold label, 0 for teacher-labelled ones (-1)."""
    return tf.cast(tf.greater_equal(tf.cast(labels, tf.int32), 0), tf.float32)


# ------------------------------------------------------------------ objective terms
# A training objective is a list of terms; `VirtModel` sums `weight * term` and asks
# each term what it needs (a teacher, its scores or logits, the student's Q/K), so
# whether a teacher runs follows from the terms alone.
class ObjectiveTerm:
    """One weighted term of the training loss (sentence-transformers style: swappable).

    ``per_example(batch)`` returns `[batch]` float32 values; ``batch`` is a dict with
    ``features``, ``labels``, ``student`` (the student's forward outputs) and, when
    ``needs_teacher``, ``teacher`` (the frozen teacher's outputs).
    """
    name = "term"
    needs_teacher = False
    needs_teacher_scores = False
    needs_student_qk = False
    SCHEDULES = ("constant", "linear")

    def __init__(self, weight=1.0, schedule="constant"):
        weight = float(weight)
        if not weight >= 0:
            raise ValueError(f"{self.name} weight must be >= 0, got {weight}")
        if schedule not in self.SCHEDULES:
            raise ValueError(f"schedule must be one of {self.SCHEDULES}, got {schedule!r}")
        self.weight = weight
        self.schedule = schedule

    def per_example(self, batch):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(weight={self.weight})"


class TaskLoss(ObjectiveTerm):
    """Cross-entropy of the student's logits with the gold labels (Eq. 10's first term).

    Pairs without a gold label (label -1: augmented pairs, labelled by the teacher
    alone) add 0, and the labelled ones are scaled by `batch / labelled` so the term
    stays the mean cross-entropy of the batch's labelled pairs (a batch of gold
    pairs only is unchanged).
    """
    name = "task_loss"

    def per_example(self, batch):
        logits = tf.cast(batch["student"]["logits"], tf.float32)
        labels = tf.cast(batch["labels"], tf.int32)
        mask = labelled_mask(labels)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.maximum(labels, 0), logits=logits)
        return ce * _mean_preserving(mask)


def _mean_preserving(mask):
    """``mask`` (`[batch]`, 0/1) scaled by `batch / kept`, so the batch mean of a masked
    term is the mean over the kept pairs (a batch with every pair kept is unchanged)."""
    return mask * tf.cast(tf.size(mask), tf.float32) / tf.maximum(tf.reduce_sum(mask), 1.0)


PAIR_SETS = ("all", "augmented", "gold")


class VirtLoss(ObjectiveTerm):
    """``weight`` (alpha of Eq. 10) times L_virt (Eq. 5-7) over the layers encoded apart.

    ``pairs`` picks the pairs the term applies to: ``all``, ``augmented`` (the
    teacher-labelled pairs, label -1, only) or ``gold`` (the gold-labelled ones only);
    the others add 0 and the kept ones are scaled as in `TaskLoss`.

    Also callable as before, ``VirtLoss()(student_x, student_y, teacher_scores,
    mask_x, mask_y)`` -> the scalar loss.
    """
    name = "virt_loss"
    needs_teacher = True
    needs_teacher_scores = True
    needs_student_qk = True

    def __init__(self, norm="squared", layers=None, weight=1.0, schedule="constant",
                 pairs="all"):
        super().__init__(weight, schedule)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if pairs not in PAIR_SETS:
            raise ValueError(f"pairs must be one of {PAIR_SETS}, got {pairs!r}")
        self.norm = norm
        self.layers = None if layers is None else [int(l) for l in layers]
        self.pairs = pairs

    def per_example(self, batch):
        student, features = batch["student"], batch["features"]
        values = virt_loss_per_example(
            student["text_a"]["queries"], student["text_a"]["keys"],
            student["text_b"]["queries"], student["text_b"]["keys"],
            batch["teacher"]["scores"], features["text_a"]["input_mask"],
            features["text_b"]["input_mask"], norm=self.norm, layers=self.layers)
        if self.pairs == "all":
            return values
        gold = labelled_mask(batch["labels"])
        return values * _mean_preserving(gold if self.pairs == "gold" else 1.0 - gold)

    def __call__(self, student_x, student_y, teacher_scores, mask_x, mask_y):
        return virt_loss(student_x["queries"], student_x["keys"], student_y["queries"],
                         student_y["keys"], teacher_scores, mask_x, mask_y,
                         norm=self.norm, layers=self.layers)


class LogitDistillationLoss(ObjectiveTerm):
    """``weight`` (beta) times DSE-style logit distillation at ``temperature`` (seed 002)."""
    name = "distill_loss"
    needs_teacher = True

    def __init__(self, temperature=1.0, weight=1.0):
        super().__init__(weight)
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def per_example(self, batch):
        return logit_distillation_per_example(batch["student"]["logits"],
                                              batch["teacher"]["logits"], self.temperature)


class LogitMSELoss(ObjectiveTerm):
    """``weight`` (beta) times the mean squared difference of student and teacher logits
    (logit matching, the alternative to `LogitDistillationLoss`'s tempered KL)."""
    name = "distill_loss"
    needs_teacher = True

    def per_example(self, batch):
        return logit_mse_per_example(batch["student"]["logits"], batch["teacher"]["logits"])


DISTILL_LOSSES = ("kl", "mse")


def objective_from_config(cfg):
    """The objective terms a run configuration asks for (task, VIRT, logit distillation).

    ``task_weight`` (default 1) weights the cross-entropy, ``virt_alpha`` L_virt,
    ``logit_beta`` the logit distillation (DSE mixes 0.5 / 0.5; ``distill_loss``:
    ``kl`` at ``temperature``, or ``mse`` on the logits). A zero weight
    drops the term, so alpha 0 is "without VIRT" for every model.
    """
    terms = [TaskLoss(weight=cfg.get("task_weight", 1.0))]
    if cfg.get("virt_alpha", 0) > 0:
        terms.append(VirtLoss(cfg.get("virt_norm", "squared"), cfg.get("virt_layers"),
                              weight=cfg["virt_alpha"],
                              schedule=cfg.get("virt_alpha_schedule", "constant"),
                              pairs=cfg.get("virt_pairs", "all")))
    if cfg.get("logit_beta", 0) > 0:
        form = cfg.get("distill_loss", "kl")
        if form not in DISTILL_LOSSES:
            raise ValueError(f"distill_loss must be one of {DISTILL_LOSSES}, got {form!r}")
        terms.append(LogitDistillationLoss(cfg.get("temperature", 1.0), weight=cfg["logit_beta"])
                     if form == "kl" else LogitMSELoss(weight=cfg["logit_beta"]))
    return terms


def needs_teacher(terms):
    return any(t.needs_teacher for t in terms)
