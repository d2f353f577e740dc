"""Per-layer L_virt of each student of the grid against its task's teacher.

Measured (`virt_tf.evaluation.alignment`) on the first pairs of the task's evaluation
split and cached in each cell's ``alignment.json``, so a report run again does not load
the models again. This module imports TensorFlow: ``tools/reproduce.py`` imports it only
for a report with the alignment.
"""
import json
import os

from virt_tf import rundir
from virt_tf.evaluation.alignment import alignment_pairs, student_virt_loss
from virt_tf.inference.matcher import load
from virt_tf.reproduction.grid import teacher_dir



def alignment(summary, output, data_root, grid, max_examples=256):
    """``{task: {row: [L_virt per layer]}}`` of every student at seed 0 and its kept
    learning rate, against its task's teacher (cached per cell)."""
    out = {}
    for task, block in summary["tasks"].items():
        cells = [c for c in summary["cells"] if c["task"] == task
                 and not block["rows"][c["row"]].get("is_teacher", c["row"] == "teacher")
                 and c["seed"] == 0 and c["lr"] == block["rows"][c["row"]]["lr"]]
        teacher_path = os.path.join(output, teacher_dir(task))
        if not cells or not rundir.has_metrics(teacher_path):
            continue
        measured = _Teacher(teacher_path, os.path.join(data_root, grid["tasks"][task]["data"]),
                            max_examples)
        for c in cells:
            cache = os.path.join(output, c["dir"], rundir.ALIGNMENT_FILE)
            if not os.path.exists(cache):
                rundir.write_text_atomic(cache, json.dumps(
                    measured.student_loss(os.path.join(output, c["dir"]))))
            out.setdefault(task, {})[c["row"]] = rundir.read_json(cache)
    return out


class _Teacher:
    """A task's teacher and its pairs, loaded when the first student is measured."""

    def __init__(self, directory, data_dir, max_examples):
        self.directory, self.data_dir, self.max_examples = directory, data_dir, max_examples
        self.classifier, self.dataset = None, None

    def student_loss(self, student_dir):
        """Per-layer L_virt of the student in ``student_dir`` against this teacher."""
        if self.classifier is None:
            matcher = load(self.directory)
            self.classifier = matcher.classifier
            _, _, self.dataset = alignment_pairs(matcher, self.data_dir,
                                                 max_examples=self.max_examples)
        return student_virt_loss(self.classifier, load(student_dir).classifier, self.dataset)
