"""Per-layer L_virt of each student against its task's teacher (Eq. 7, one layer at a time).

Measured on the first pairs of the task's evaluation split and cached in each
cell's ``alignment.json``, so a report run again does not load the models again.
"""
import json
import os

from virt_tf.reproduction.grid import teacher_dir


def alignment(summary, output, data_root, grid, max_examples=256):
    """Per-layer L_virt of every student against its task's teacher (cached per cell)."""
    from virt_tf.data.pipeline import eval_dataset  # pylint: disable=import-outside-toplevel
    from virt_tf.inference.matcher import load  # pylint: disable=import-outside-toplevel
    from virt_tf.losses import virt_loss  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    out = {}
    for task, block in summary["tasks"].items():
        cells = [c for c in summary["cells"] if c["task"] == task and c["row"] != "teacher"
                 and c["seed"] == 0 and c["lr"] == block["rows"][c["row"]]["lr"]]
        teacher_path = os.path.join(output, teacher_dir(task))
        if not cells or not os.path.exists(os.path.join(teacher_path, "metrics.json")):
            continue
        teacher = None
        for c in cells:
            cache = os.path.join(output, c["dir"], "alignment.json")
            if not os.path.exists(cache):
                if teacher is None:
                    matcher = load(teacher_path)
                    teacher = matcher.classifier
                    split = matcher.config.get("eval_split", "dev")
                    examples = matcher.read_split(os.path.join(
                        data_root, grid["tasks"][task]["data"]), split)[:max_examples]
                    dataset, _ = eval_dataset(examples, matcher.preprocessor, 32)
                student = load(os.path.join(output, c["dir"])).classifier
                layers = student.separate_layers
                sums, count = [0.0] * layers, 0
                for features, labels in dataset:
                    t = teacher.forward(features, return_scores=True)
                    sx = student.encode(features["text_a"], return_qk=True)
                    sy = student.encode(features["text_b"], return_qk=True)
                    b = int(tf.shape(labels)[0])
                    for l in range(layers):
                        sums[l] += float(virt_loss(
                            sx["queries"], sx["keys"], sy["queries"], sy["keys"], t["scores"],
                            features["text_a"]["input_mask"], features["text_b"]["input_mask"],
                            layers=[l])) * b
                    count += b
                with open(cache, "w", encoding="utf-8") as f:
                    json.dump([s / max(count, 1) for s in sums], f)
            with open(cache, encoding="utf-8") as f:
                out.setdefault(task, {})[c["row"]] = json.load(f)
    return out
