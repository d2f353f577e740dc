"""How close a trained student's virtual attention maps are to its teacher's, layer by layer.

For each layer ``l`` apart, L_virt of Eq. 7 restricted to that layer
(`virt_tf.losses.virt_loss` with ``layers=[l]``: the training loss, content pieces only),
averaged over the pairs of a split. A student trained with VIRT should sit below the
Siamese baseline; the mean over the layers is the full L_virt of those pairs.

The one implementation: ``tools/virt_alignment.py`` prints it for chosen model
directories, `virt_tf.reproduction.alignment` for every student of the grid.

    examples, split, dataset = alignment_pairs(teacher_matcher, "data/rte", max_examples=256)
    per_layer = student_virt_loss(teacher_matcher.classifier, student, dataset)
"""
import tensorflow as tf

from virt_tf.data.pipeline import eval_dataset
from virt_tf.losses import virt_loss


def alignment_pairs(matcher, data_dir, split=None, max_examples=None, batch_size=32):
    """The pairs L_virt is measured on: ``(examples, split, dataset)``.

    The first ``max_examples`` (None: all) pairs of ``split`` (default: the teacher's
    evaluation split) of the task files in ``data_dir``, batched for ``matcher`` (the
    teacher's `virt_tf.inference.matcher.TextMatcher`): the dataset yields ``(features,
    labels)`` with the ``pair``, ``text_a`` and ``text_b`` packings, each `[batch, seq]`.
    """
    split = split or matcher.config.get("eval_split", "dev")
    examples = matcher.read_split(data_dir, split)[:max_examples]
    dataset, _ = eval_dataset(examples, matcher.preprocessor, batch_size)
    return examples, split, dataset


def per_layer_virt_loss(teacher, encode_fn, dataset, num_layers):
    """Mean over the pairs of Eq. 7 restricted to each layer: a list of ``num_layers`` floats.

    Args:
      teacher: a cross-encoder classifier (``forward(features, return_scores=True)``
        gives its attention scores, per layer `[batch, heads, seq, seq]`).
      encode_fn: one text packing -> the student's encoder outputs with ``queries`` and
        ``keys`` per layer (`[batch, heads, seq, head_size]`), e.g. a Siamese
        classifier's ``encode(text, return_qk=True)``.
      dataset: ``(features, labels)`` batches (`alignment_pairs`).
      num_layers: the layers the student runs on each text apart.
    """
    # eagerly, summed layer by layer in Python floats: the numbers of every earlier report
    sums, count = [0.0] * num_layers, 0
    for features, labels in dataset:
        scores = teacher.forward(features, return_scores=True)["scores"]
        sx = encode_fn(features["text_a"])
        sy = encode_fn(features["text_b"])
        size = int(tf.shape(labels)[0])
        for l in range(num_layers):
            sums[l] += float(virt_loss(
                sx["queries"], sx["keys"], sy["queries"], sy["keys"], scores,
                features["text_a"]["input_mask"], features["text_b"]["input_mask"],
                layers=[l])) * size
        count += size
    return [s / max(count, 1) for s in sums]


def student_virt_loss(teacher, student, dataset):
    """`per_layer_virt_loss` of a trained dual-encoder ``student``: one float for each of
    its ``separate_layers`` (DeFormer's upper layers see both texts: no virtual map)."""
    return per_layer_virt_loss(
        teacher, lambda text: student.encode(text, training=False, return_qk=True), dataset,
        student.separate_layers)
