"""The paper's numbers against independent numpy references.

Every reference below is written from the paper's equations and SPEC.md, in
float64 numpy, one example at a time (no masks, no gathers): it shares no code
with `virt_tf`. Each test also checks that the inputs are *discriminating*: the
plausible mistakes (1/m and 1/n swapped, no 1/(2L), y's block one position off,
padding in the mean, no T^2, ...) move the reference by far more than the
tolerance, so the comparison with the implementation can fail.

- L_virt (Eq. 5-7): SPEC "VIRT loss".
- VIRT-adapted interaction (Eq. 8) and fusion classifier (Eq. 9): SPEC
  "VIRT-adapted interaction and fusion" and the "released code" table.
- Warmup then linear decay: paper section 4.3.2 / SPEC "Training setup".
- F1 of the positive class, ROC-AUC (Mann-Whitney), logit distillation (seed 002).
"""
import math

import numpy as np
import pytest

# --------------------------------------------------------------------------- helpers


def _softmax(z, axis=-1):
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _erf(x):
    return np.vectorize(math.erf)(x)


def _gelu_exact(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _far(a, b, tol, factor=100.0):
    """`a` and `b` differ by more than ``factor`` times the tolerance."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) > factor * tol


# --------------------------------------------------------------------------- L_virt (Eq. 5-7)

HEADS, D_HEAD, LAYERS = 3, 4, 3
M_LIST = [2, 5, 4, 1]   # x content lengths (ragged)
N_LIST = [6, 1, 3, 4]   # y content lengths (ragged, m != n in every example)
EXTRA_PAD = 2           # padding past the longest text, in the students' and the teacher's inputs
SPECIAL = 10.0          # [CLS]/[SEP] rows and columns of the teacher: far from the content scores


@pytest.fixture(scope="module")
def virt_inputs():
    """Student Q/K of `[CLS] x [SEP]`, `[CLS] y [SEP]` and teacher raw scores of
    `[CLS] x [SEP] y [SEP]` (with its -1e9 key-padding bias), padded and ragged."""
    rng = np.random.default_rng(2024)
    b = len(M_LIST)
    lx, ly = max(M_LIST) + 2 + EXTRA_PAD, max(N_LIST) + 2 + EXTRA_PAD
    t = max(m + n for m, n in zip(M_LIST, N_LIST)) + 3 + EXTRA_PAD
    mask_x = np.array([[1] * (m + 2) + [0] * (lx - m - 2) for m in M_LIST], np.int32)
    mask_y = np.array([[1] * (n + 2) + [0] * (ly - n - 2) for n in N_LIST], np.int32)

    def qk(length):
        # scale 1.5: peaked (not flat) attention, so that the maps carry information
        return [(1.5 * rng.normal(size=(b, HEADS, length, D_HEAD))).astype(np.float32)
                for _ in range(LAYERS)]

    qx, kx, qy, ky = qk(lx), qk(lx), qk(ly), qk(ly)
    teacher = []
    for _ in range(LAYERS):
        s = (2.5 * rng.normal(size=(b, HEADS, t, t))).astype(np.float32)
        for i, (m, n) in enumerate(zip(M_LIST, N_LIST)):
            for p in (0, m + 1, m + n + 2):   # [CLS], first [SEP], last [SEP]
                s[i, :, p, :] += SPECIAL
                s[i, :, :, p] += SPECIAL
            s[i, :, :, m + n + 3:] += -1e9     # key padding bias of the teacher
        teacher.append(s)
    return {"qx": qx, "kx": kx, "qy": qy, "ky": ky, "teacher": teacher,
            "mask_x": mask_x, "mask_y": mask_y}


def ref_virt_loss(inp, norm="squared", layers=None, *, swap_mn=False, layer_scale=True,
                  y_offset=2, include_special=False, reduce=True):
    """SPEC Eq. 7, one example at a time, float64:

    `1/(2L) sum_l [ 1/m sum_h D(Mt_xy, M_xy) + 1/n sum_h D(Mt_yx, M_yx) ]`, mean over the batch,
    with `D` the squared Frobenius norm (``squared``) or the plain one (``frobenius``), or
    (``kl``, beyond the paper) the sum over rows of KL(teacher row || student row).
    `Mt_xy = softmax_y(Qx Ky^T / sqrt(d_head))` (Eq. 5) on x's pieces 1..m and y's 1..n of the
    students' inputs; `M_xy = softmax_y(S[x rows, y cols])` (Eq. 6) with, in the teacher's
    `[CLS] x [SEP] y [SEP]`, x at 1..m and y at m+2..m+n+1. L = the number of distilled layers.

    The keyword-only flags build *wrong* variants, used to show the inputs discriminate;
    ``reduce=False`` returns the per-example values instead of their mean.
    """
    layers = list(range(len(inp["qx"]))) if layers is None else list(layers)
    per_example = []
    for i, (m, n) in enumerate(zip(M_LIST, N_LIST)):
        total = 0.0
        for l in layers:
            for_layer = {"xy": 0.0, "yx": 0.0}
            for h in range(HEADS):
                lo = 0 if include_special else 1
                qx = inp["qx"][l][i, h, lo:m + 1].astype(np.float64)
                kx = inp["kx"][l][i, h, lo:m + 1].astype(np.float64)
                qy = inp["qy"][l][i, h, lo:n + 1].astype(np.float64)
                ky = inp["ky"][l][i, h, lo:n + 1].astype(np.float64)
                student_xy = _softmax(qx @ ky.T / math.sqrt(D_HEAD))
                student_yx = _softmax(qy @ kx.T / math.sqrt(D_HEAD))
                s = inp["teacher"][l][i, h].astype(np.float64)
                x_pos = np.arange(lo, m + 1)
                y_pos = m + y_offset + np.arange(0 if not include_special else -1, n)
                teacher_xy = _softmax(s[np.ix_(x_pos, y_pos)])
                teacher_yx = _softmax(s[np.ix_(y_pos, x_pos)])
                for key, a, b in (("xy", student_xy, teacher_xy), ("yx", student_yx, teacher_yx)):
                    if norm == "kl":  # per row KL(teacher || student), summed over rows
                        for_layer[key] += float(np.sum(b * (np.log(b) - np.log(a))))
                        continue
                    sq = float(np.sum((a - b) ** 2))
                    for_layer[key] += sq if norm == "squared" else math.sqrt(sq)
            inv_x, inv_y = (1.0 / n, 1.0 / m) if swap_mn else (1.0 / m, 1.0 / n)
            total += inv_x * for_layer["xy"] + inv_y * for_layer["yx"]
        per_example.append(total / (2.0 * len(layers)) if layer_scale else total)
    return float(np.mean(per_example)) if reduce else np.array(per_example)


def _virt(inp, **kwargs):
    from virt_tf.losses import virt_loss
    return float(virt_loss(inp["qx"], inp["kx"], inp["qy"], inp["ky"], inp["teacher"],
                           inp["mask_x"], inp["mask_y"], **kwargs))


VIRT_RTOL = 2e-5   # float32 softmaxes and sums of a few hundred terms


@pytest.mark.parametrize("norm", ["squared", "frobenius", "kl"])
def test_virt_loss_matches_eq7_reference(virt_inputs, norm):
    ref = ref_virt_loss(virt_inputs, norm)
    tol = VIRT_RTOL * ref
    # the inputs discriminate between Eq. 7 and its likely mistakes
    for wrong in (dict(swap_mn=True), dict(layer_scale=False), dict(y_offset=1),
                  dict(y_offset=3), dict(include_special=True)):
        assert _far(ref_virt_loss(virt_inputs, norm, **wrong), ref, tol), wrong
    for other in {"squared", "frobenius", "kl"} - {norm}:
        assert _far(ref_virt_loss(virt_inputs, other), ref, tol)
    assert _virt(virt_inputs, norm=norm) == pytest.approx(ref, rel=VIRT_RTOL)


@pytest.mark.parametrize("layers", [[1], [0, 2]])
@pytest.mark.parametrize("norm", ["squared", "frobenius", "kl"])
def test_virt_loss_layer_subset_matches_reference(virt_inputs, layers, norm):
    """``layers=`` distils those layers only; 1/(2L) counts the distilled layers."""
    ref = ref_virt_loss(virt_inputs, norm, layers)
    assert _far(ref, ref_virt_loss(virt_inputs, norm), VIRT_RTOL * ref)
    assert _far(ref, ref_virt_loss(virt_inputs, norm, layers, layer_scale=False), VIRT_RTOL * ref)
    assert _virt(virt_inputs, norm=norm, layers=layers) == pytest.approx(ref, rel=VIRT_RTOL)


def test_virt_loss_reference_is_zero_on_matching_maps(virt_inputs):
    """Sanity of the reference itself: a teacher whose blocks are the students' scores gives 0."""
    inp = dict(virt_inputs, teacher=[t.copy() for t in virt_inputs["teacher"]])
    for l in range(LAYERS):
        for i, (m, n) in enumerate(zip(M_LIST, N_LIST)):
            x, y = slice(1, m + 1), slice(m + 2, m + n + 2)
            for h in range(HEADS):
                inp["teacher"][l][i, h, x, y] = (inp["qx"][l][i, h, 1:m + 1]
                                                 @ inp["ky"][l][i, h, 1:n + 1].T / math.sqrt(D_HEAD))
                inp["teacher"][l][i, h, y, x] = (inp["qy"][l][i, h, 1:n + 1]
                                                 @ inp["kx"][l][i, h, 1:m + 1].T / math.sqrt(D_HEAD))
    assert ref_virt_loss(inp) == pytest.approx(0.0, abs=1e-12)
    assert _virt(inp) == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- Eq. 8

HIDDEN = 8
X_LEN, Y_LEN = [3, 7, 5], [6, 2, 4]   # valid positions per example (padding in the batch)


@pytest.fixture(scope="module")
def eq8_inputs():
    rng = np.random.default_rng(8)
    b, px, py = len(X_LEN), max(X_LEN) + 1, max(Y_LEN) + 2
    hx = rng.normal(size=(b, px, HIDDEN)).astype(np.float32)
    hy = rng.normal(size=(b, py, HIDDEN)).astype(np.float32)
    mask_x = np.array([[1] * k + [0] * (px - k) for k in X_LEN], np.int32)
    mask_y = np.array([[1] * k + [0] * (py - k) for k in Y_LEN], np.int32)
    # padded positions hold large junk: reading them anywhere changes the result
    hx[mask_x == 0] = 4.0 + rng.normal(size=hx[mask_x == 0].shape)
    hy[mask_y == 0] = 4.0 + rng.normal(size=hy[mask_y == 0].shape)
    return hx, mask_x, hy, mask_y


def ref_eq8(hx, lens_x, hy, lens_y, pool_padding=False, scale_dim=HIDDEN):
    """Eq. 8 per example: `u = Pool_i (softmax_j(Hx Hy^T / sqrt(d)) Hy)_i` over x's valid rows i,
    y's valid columns j; Pool = mean over the m valid rows, or (``pool_padding``) their sum
    divided by the padded length. `v` swaps x and y."""
    def side(hq, lq, hk, lk):
        out = []
        for i in range(hq.shape[0]):
            q = hq[i, :lq[i]].astype(np.float64)
            k = hk[i, :lk[i]].astype(np.float64)
            attended = _softmax(q @ k.T / math.sqrt(scale_dim)) @ k       # [m, d]
            denom = hq.shape[1] if pool_padding else lq[i]
            out.append(attended.sum(axis=0) / denom)
        return np.stack(out)
    return side(hx, lens_x, hy, lens_y), side(hy, lens_y, hx, lens_x)


@pytest.mark.parametrize("pool_padding", [False, True])
def test_eq8_interaction_matches_reference(eq8_inputs, pool_padding):
    from virt_tf.modeling.layers.interaction import VirtAdaptedInteraction

    hx, mask_x, hy, mask_y = eq8_inputs
    ref_u, ref_v = ref_eq8(hx, X_LEN, hy, Y_LEN, pool_padding)
    tol = 1e-5
    assert _far(ref_eq8(hx, X_LEN, hy, Y_LEN, not pool_padding)[0], ref_u, tol)
    assert _far(ref_eq8(hx, X_LEN, hy, Y_LEN, pool_padding, scale_dim=HIDDEN // 4)[0], ref_u, tol)
    u, v = VirtAdaptedInteraction(pool_padding=pool_padding)(hx, mask_x, hy, mask_y)
    np.testing.assert_allclose(np.asarray(u), ref_u, atol=tol, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(v), ref_v, atol=tol, rtol=1e-5)


# --------------------------------------------------------------------------- Eq. 9

def ref_fusion_features(u, v, form):
    u, v = u.astype(np.float64), v.astype(np.float64)
    if form == "paper":
        return np.concatenate([u, v, u - v, np.maximum(u, v)], axis=-1)
    return np.concatenate([u, v, np.abs(u - v), np.maximum(u, v) ** 2], axis=-1)


@pytest.mark.parametrize("form,activation", [("paper", "gelu"), ("code", "gelu"),
                                             ("paper", None)])
def test_eq9_fusion_classifier_matches_reference(form, activation):
    """`logits = MLP2(act(MLP1(r)) + r)` from the layer's own weights, at inference (no dropout).
    The default activation is Keras's ``gelu``, which is the exact (erf) GELU."""
    import keras
    from virt_tf.modeling.layers.fusion import FusionClassifier

    rng = np.random.default_rng(9)
    b, d, labels = 5, 6, 3
    u = rng.normal(size=(b, d)).astype(np.float32)
    v = rng.normal(size=(b, d)).astype(np.float32)
    kwargs = {} if activation == "gelu" else {"activation": activation}  # gelu: the default
    layer = FusionClassifier(labels, form=form, dropout_rate=0.1, **kwargs)
    layer(u, v)   # builds
    # wider weights and non-zero biases than the initializer's: O(1) pre-activations,
    # where exact and tanh GELU differ, and biases that count
    w1 = (rng.normal(size=(4 * d, 4 * d)) * 0.4).astype(np.float32)
    b1 = rng.normal(size=(4 * d,)).astype(np.float32)
    w2 = (rng.normal(size=(4 * d, labels)) * 0.4).astype(np.float32)
    b2 = rng.normal(size=(labels,)).astype(np.float32)
    layer.mlp1.kernel.assign(w1)
    layer.mlp1.bias.assign(b1)
    layer.mlp2.kernel.assign(w2)
    layer.mlp2.bias.assign(b2)
    assert len(layer.weights) == 4   # nothing else takes part

    r = ref_fusion_features(u, v, form)
    pre = r @ w1.astype(np.float64) + b1

    def logits(act):
        return (act(pre) + r) @ w2.astype(np.float64) + b2

    ref = logits(_gelu_exact if activation == "gelu" else (lambda z: z))
    tol = 1e-5   # float32 logits of size ~5 are off by ~1e-6; tanh-GELU moves them by ~1e-3
    # the activation matters (gelu vs none), and so does which GELU
    assert _far(logits(lambda z: z) if activation == "gelu" else logits(_gelu_exact), ref, tol)
    if activation == "gelu":
        assert _far(logits(_gelu_tanh), ref, tol, factor=10)
    other = ref_fusion_features(u, v, "code" if form == "paper" else "paper")
    assert _far((_gelu_exact(other @ w1 + b1) + other) @ w2 + b2, ref, tol)
    out = np.asarray(layer(u, v, training=False))
    np.testing.assert_allclose(out, ref, atol=tol, rtol=0)
    np.testing.assert_allclose(np.asarray(layer(u, v)), ref, atol=tol, rtol=0)  # default: inference
    keras.utils.set_random_seed(3)
    assert _far(np.asarray(layer(u, v, training=True)), ref, tol)  # dropout is there in training


# --------------------------------------------------------------------------- schedule

@pytest.mark.parametrize("peak,total,warmup", [(5e-5, 1000, 100), (2e-5, 37, 3)])
def test_warmup_then_linear_decay_closed_form(peak, total, warmup):
    """`lr(s) = peak s / w` for s < w, `peak (T - s) / (T - w)` for w <= s <= T, 0 after T."""
    from virt_tf.training.optimization import WarmupLinearDecay, create_optimizer

    def closed(s):
        if s < warmup:
            return peak * s / warmup
        return peak * max(0.0, (total - s) / (total - warmup))

    steps = [0, warmup // 2, warmup - 1, warmup, (warmup + total) // 2, total - 1, total,
             total + 5, 3 * total]
    schedule = WarmupLinearDecay(peak, total, warmup)
    got = [float(schedule(s)) for s in steps]
    np.testing.assert_allclose(got, [closed(s) for s in steps], rtol=1e-5, atol=peak * 1e-6)
    assert got[steps.index(warmup)] == pytest.approx(peak, rel=1e-6)  # the peak at the warmup's end
    # the optimizer of section 4.3.2: warmup = 10% of the steps, Adam's paper settings
    opt = create_optimizer(peak, total)
    assert (opt.beta_1, opt.beta_2, opt.epsilon) == (0.9, 0.999, 1e-8)
    w10 = int(0.1 * total)
    for s in (w10 // 2, w10, total - 1):
        opt.iterations.assign(s)
        ref = peak * s / w10 if s < w10 else peak * (total - s) / (total - w10)
        # float32: 1 - (s - w)/(T - w) cancels near the end, hence an absolute slack
        assert float(opt.learning_rate) == pytest.approx(ref, rel=1e-5, abs=peak * 1e-6)


# --------------------------------------------------------------------------- metrics

def _metric_data():
    """Binary probabilities on a grid of distinct scores (spacing >= 0.0058 > 1/999: no two
    scores share one of the Keras AUC's 1000 threshold buckets), correlated with the labels,
    unbalanced (about 35% positives, 25 predicted positives), so that F1 of class 1 and of
    class 0 differ, and precision and recall differ."""
    rng = np.random.default_rng(11)
    n, predicted_pos = 100, 25
    labels = (rng.random(n) < 0.35).astype(np.int64)
    noisy = labels * 1.2 + rng.normal(size=n) * 0.9   # AUC ~0.89: labels interleave
    rank = np.empty(n, np.int64)
    rank[np.argsort(noisy)] = np.arange(n)
    low = n - predicted_pos
    scores = np.where(rank < low, 0.05 + rank * (0.44 / low),          # 0.05 .. 0.49: class 0
                      0.505 + (rank - low) * (0.49 / predicted_pos))  # 0.505 .. 0.98: class 1
    return np.stack([1.0 - scores, scores], axis=1).astype(np.float32), labels, scores


def ref_f1(pred, labels, positive=1):
    tp = np.sum((pred == positive) & (labels == positive))
    fp = np.sum((pred == positive) & (labels != positive))
    fn = np.sum((pred != positive) & (labels == positive))
    return 2 * tp / (2 * tp + fp + fn)


def ref_auc(scores, labels):
    """Mann-Whitney: P(score of a positive > score of a negative), no ties."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float(np.mean(pos[:, None] > neg[None, :]))


def test_f1_and_roc_auc_match_hand_computation():
    from virt_tf.evaluation.metrics import compute_metrics

    probs, labels, scores = _metric_data()
    pred = (scores > 0.5).astype(np.int64)
    f1, auc = ref_f1(pred, labels), ref_auc(scores, labels)
    assert len(np.unique(scores)) == len(scores)
    assert abs(ref_f1(pred, labels, positive=0) - f1) > 0.05      # the positive class matters
    assert abs(ref_auc(1.0 - scores, labels) - auc) > 0.2         # the score column matters
    precision = np.sum((pred == 1) & (labels == 1)) / np.sum(pred == 1)
    recall = np.sum((pred == 1) & (labels == 1)) / np.sum(labels == 1)
    assert abs(precision - recall) > 0.02 and f1 == pytest.approx(
        2 * precision * recall / (precision + recall))
    got = compute_metrics(probs, labels, ("accuracy", "f1", "roc_auc"))
    assert got["examples"] == len(labels)
    assert got["accuracy"] == pytest.approx(np.mean(pred == labels), abs=1e-6)
    assert got["f1"] == pytest.approx(f1, abs=1e-6)
    # The Keras AUC interpolates over 1000 thresholds; with no two scores in one bucket its
    # trapezoids are exact, so the only slack is float32 accumulation: 1e-4. (With 50
    # thresholds, scores share buckets and the same data is off by 1.6e-3.)
    assert got["roc_auc"] == pytest.approx(auc, abs=1e-4)


# --------------------------------------------------------------------------- logit distillation

@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_logit_distillation_matches_tempered_kl(temperature):
    """`T^2 mean_batch KL(softmax(t/T) || softmax(s/T))`."""
    from virt_tf.losses import logit_distillation_loss

    rng = np.random.default_rng(12)
    s = (2.0 * rng.normal(size=(6, 3))).astype(np.float32)
    t = (2.0 * rng.normal(size=(6, 3))).astype(np.float32)

    def kl(p_logits, q_logits):
        p, q = _softmax(p_logits / temperature), _softmax(q_logits / temperature)
        return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1)))

    ref = temperature ** 2 * kl(t, s)
    tol = 1e-5 * ref
    assert _far(temperature ** 2 * kl(s, t), ref, tol)       # direction
    if temperature != 1.0:
        assert _far(kl(t, s), ref, tol)                       # T^2
    got = float(logit_distillation_loss(s, t, temperature))
    assert got == pytest.approx(ref, rel=1e-5)


def test_logit_mse_matches_mean_squared_difference():
    """`mean_batch mean_class (s - t)^2` (logit matching: no softmax, offsets count)."""
    from virt_tf.losses import LogitMSELoss

    rng = np.random.default_rng(13)
    s = (2.0 * rng.normal(size=(5, 3))).astype(np.float32)
    t = (2.0 * rng.normal(size=(5, 3))).astype(np.float32)
    ref = float(np.mean((s.astype(np.float64) - t) ** 2))
    assert _far(float(np.mean(np.sum((s.astype(np.float64) - t) ** 2, -1))), ref, 1e-5 * ref)
    got = LogitMSELoss().per_example({"student": {"logits": s}, "teacher": {"logits": t}})
    assert float(np.mean(got)) == pytest.approx(ref, rel=1e-6)
    # a constant offset of the logits changes nothing in KL but everything here
    shifted = LogitMSELoss().per_example({"student": {"logits": s}, "teacher": {"logits": s + 1}})
    assert np.allclose(shifted.numpy(), 1.0, atol=1e-6)


def test_task_loss_skips_pairs_without_gold_label():
    """Label -1 (a teacher-labelled pair) adds 0; the rest is the mean cross-entropy of the
    labelled pairs (scaled by batch / labelled so the batch mean is theirs)."""
    from virt_tf.losses import TaskLoss

    rng = np.random.default_rng(14)
    logits = (2.0 * rng.normal(size=(6, 3))).astype(np.float32)
    labels = np.array([0, -1, 2, -1, 1, 1], np.int32)
    p = _softmax(logits.astype(np.float64))
    kept = labels >= 0
    ref = float(np.mean(-np.log(p[np.arange(6)[kept], labels[kept]])))
    per = TaskLoss().per_example({"student": {"logits": logits}, "labels": labels}).numpy()
    assert per[~kept].tolist() == [0.0, 0.0]
    assert float(np.mean(per)) == pytest.approx(ref, rel=1e-6)
    # all labelled: the plain mean cross-entropy
    full = TaskLoss().per_example({"student": {"logits": logits},
                                   "labels": np.maximum(labels, 0)}).numpy()
    ref_full = float(np.mean(-np.log(p[np.arange(6), np.maximum(labels, 0)])))
    assert float(np.mean(full)) == pytest.approx(ref_full, rel=1e-6)


@pytest.mark.parametrize("pairs", ["augmented", "gold"])
def test_virt_loss_on_a_subset_of_pairs_matches_reference(virt_inputs, pairs):
    """``pairs=augmented`` (label -1 only) / ``gold``: the other pairs add 0 and the batch
    mean is the float64 Eq. 7 mean over the kept pairs."""
    from virt_tf.losses import VirtLoss

    b = len(M_LIST)
    labels = np.array([(-1 if i % 2 else i % 3) for i in range(b)], np.int32)
    keep = labels < 0 if pairs == "augmented" else labels >= 0
    assert 0 < keep.sum() < b
    per_ref = ref_virt_loss(virt_inputs, reduce=False)
    ref = float(np.mean(per_ref[keep]))
    batch = {"student": {"text_a": {"queries": virt_inputs["qx"], "keys": virt_inputs["kx"]},
                         "text_b": {"queries": virt_inputs["qy"], "keys": virt_inputs["ky"]}},
             "teacher": {"scores": virt_inputs["teacher"]}, "labels": labels,
             "features": {"text_a": {"input_mask": virt_inputs["mask_x"]},
                          "text_b": {"input_mask": virt_inputs["mask_y"]}}}
    per = VirtLoss(pairs=pairs).per_example(batch).numpy()
    assert np.all(per[~keep] == 0.0)
    assert float(np.mean(per)) == pytest.approx(ref, rel=VIRT_RTOL)
    assert _far(ref, float(np.mean(per_ref)), VIRT_RTOL * ref)   # the subset matters here
    every = VirtLoss().per_example(batch).numpy()
    assert float(np.mean(every)) == pytest.approx(float(np.mean(per_ref)), rel=VIRT_RTOL)
    with pytest.raises(ValueError, match="pairs"):
        VirtLoss(pairs="teacher")

