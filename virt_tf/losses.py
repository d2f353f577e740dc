"""Losses: VIRT attention-map distillation (paper Eq. 5-7) and logit distillation.

Each loss is a plain function of tensors (no model inside), plus a small
callable class wrapping it so losses can be swapped in a model's config.
"""
import math

import tensorflow as tf

from virt_tf.modeling.layers.attention import attention_bias

NORMS = ("squared", "frobenius")


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
    """Per-example `sum_h ||student - teacher||` over valid rows: `[batch]`."""
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
    plain norm of the paper's text).

    Args:
      student_queries_x, student_keys_x: lists over layers of `[batch, heads, Lx, d_head]`
        from the student encoding `[CLS] x [SEP]`.
      student_queries_y, student_keys_y: the same for `[CLS] y [SEP]`, `[batch, heads, Ly, d_head]`.
      teacher_scores: list over layers of `[batch, heads, T, T]` raw teacher scores of
        `[CLS] x [SEP] y [SEP]` built from the same truncated pieces.
      mask_x, mask_y: `[batch, Lx]`, `[batch, Ly]` student input masks.
      norm: ``squared`` or ``frobenius``.
      layers: optional student layer indices to distil (default: all).
    Returns: scalar loss.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    num_layers = len(student_queries_x)
    if len(teacher_scores) != num_layers:
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
    for l in layers:
        qx = student_queries_x[l][:, :, 1:1 + mx]
        kx = student_keys_x[l][:, :, 1:1 + mx]
        qy = student_queries_y[l][:, :, 1:1 + ny]
        ky = student_keys_y[l][:, :, 1:1 + ny]
        scale = 1.0 / math.sqrt(qx.shape[-1])
        st_xy = _masked_softmax(tf.matmul(qx, ky, transpose_b=True) * scale, y_valid)
        st_yx = _masked_softmax(tf.matmul(qy, kx, transpose_b=True) * scale, x_valid)
        s_xy, s_yx = teacher_cross_scores(tf.stop_gradient(teacher_scores[l]), m, n, mx, ny)
        t_xy = _masked_softmax(s_xy, y_valid)
        t_yx = _masked_softmax(s_yx, x_valid)
        total += inv_m * _map_distance(st_xy, t_xy, x_valid, norm)
        total += inv_n * _map_distance(st_yx, t_yx, y_valid, norm)
    return tf.reduce_mean(total) / (2.0 * len(layers))


class VirtLoss:
    """Swappable wrapper of `virt_loss` holding its options."""

    def __init__(self, norm="squared", layers=None):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.norm = norm
        self.layers = layers

    def __call__(self, student_x, student_y, teacher_scores, mask_x, mask_y):
        return virt_loss(student_x["queries"], student_x["keys"], student_y["queries"],
                         student_y["keys"], teacher_scores, mask_x, mask_y,
                         norm=self.norm, layers=self.layers)


def logit_distillation_loss(student_logits, teacher_logits, temperature=1.0):
    """DSE-style distillation (seed 002): KL(teacher || student) of tempered softmaxes, x T^2."""
    t = tf.nn.softmax(tf.stop_gradient(teacher_logits) / temperature, axis=-1)
    log_s = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    log_t = tf.math.log(tf.maximum(t, 1e-12))
    return tf.reduce_mean(tf.reduce_sum(t * (log_t - log_s), axis=-1)) * temperature ** 2
