"""tools/compare_runs.py and its statistics (virt_tf.evaluation.stats; no models needed)."""
import math
import os
import sys

import numpy as np
import pytest

from virt_tf.evaluation.stats import compare, mcnemar_exact


def test_mcnemar_matches_the_binomial_tail():
    # n=10 discordant, 1 vs 9: 2 * (C(10,0) + C(10,1)) / 2^10
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    # large counts stay finite and small (log-space sum)
    p = mcnemar_exact(300, 420)
    assert 0 < p < 1e-4 and not math.isnan(p)
    # against exact integer arithmetic: 2 * sum_{i <= min} C(n, i) / 2^n
    for a, b in ((300, 420), (1108, 545), (107, 104), (0, 40)):
        n, k = a + b, min(a, b)
        exact = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
        assert mcnemar_exact(a, b) == pytest.approx(exact, rel=1e-9)


def test_compare_counts_discordant_pairs_and_agreement():
    labels = np.array([0, 1, 1, 0, 2])
    preds = {"teacher": np.array([0, 1, 1, 0, 2]),
             "a": np.array([0, 1, 0, 0, 1]),
             "b": np.array([1, 1, 1, 0, 1])}
    out = compare(preds, labels)
    assert out["models"]["a"]["accuracy"] == pytest.approx(0.6)
    assert out["models"]["b"]["agreement_with_teacher"] == pytest.approx(0.6)
    # this teacher is right everywhere: b's accuracy where it is right is b's accuracy,
    # and where it is wrong there is nothing to count
    assert out["models"]["b"]["accuracy_where_teacher_right"] == pytest.approx(0.6)
    assert math.isnan(out["models"]["b"]["accuracy_where_teacher_wrong"])
    wrong = compare({"t": np.array([0, 0, 1, 1]), "s": np.array([0, 1, 1, 0])}, [0, 1, 1, 1])
    assert wrong["models"]["s"]["accuracy_where_t_right"] == pytest.approx(2 / 3)
    assert wrong["models"]["s"]["accuracy_where_t_wrong"] == 1.0
    ab = [p for p in out["pairs"] if (p["a"], p["b"]) == ("a", "b")][0]
    assert (ab["only_a_right"], ab["only_b_right"]) == (1, 1)
    # the same test on agreeing with the first model: a agrees with the teacher on
    # pairs 0, 1, 3 and b on 1, 2, 3; pairs with the teacher itself have no such count
    assert (ab["only_a_agrees"], ab["only_b_agrees"]) == (1, 1) and ab["agreement_p"] == 1.0
    ta = [p for p in out["pairs"] if (p["a"], p["b"]) == ("teacher", "a")][0]
    assert "agreement_p" not in ta


def _save(directory, split, classes, examples):
    from virt_tf.evaluation.predictions import save_predictions
    os.makedirs(directory, exist_ok=True)
    (directory / "model_config.json").write_text("{}")  # what the path check looks for
    save_predictions(str(directory), split, np.eye(3, dtype=np.float32)[classes], examples)


def test_saved_predictions_are_compared_without_models(tmp_path):
    import subprocess
    from virt_tf.data.tasks import Example
    from virt_tf.errors import ConfigError
    from virt_tf.evaluation.predictions import read_same_pairs
    examples = [Example(f"premise {i}", f"hypothesis {i}", i % 3) for i in range(6)]
    _save(tmp_path / "a", "dev", [0, 1, 2, 0, 1, 0], examples)   # right on 0-4
    _save(tmp_path / "b", "dev", [1, 1, 2, 1, 1, 2], examples)   # right on 1, 2, 4, 5
    classes, labels, split = read_same_pairs([tmp_path / "a", tmp_path / "b"])
    assert split == "dev" and list(labels) == [0, 1, 2, 0, 1, 2]
    assert list(classes[tmp_path / "b"]) == [1, 1, 2, 1, 1, 2]
    # other pairs (a changed label), another split, or no file: a user error, not a test
    _save(tmp_path / "c", "dev", [0] * 6, examples[:5] + [Example("premise 5", "hypothesis 5", 0)])
    _save(tmp_path / "d", "test", [0] * 6, examples)
    for other in ("c", "d", "missing"):
        with pytest.raises(ConfigError):
            read_same_pairs([tmp_path / "a", tmp_path / other])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, os.path.join(root, "tools", "compare_runs.py"), "--saved",
                          f"--model_dirs={tmp_path / 'a'},{tmp_path / 'b'}"],
                         capture_output=True, text=True, cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "6 dev pairs" in out.stdout
    # only a right on pairs 0 and 3, only b on 5: exact McNemar 3 / 4 (2 vs 1 of 3)
    assert "| a | b | 2 | 1 | 1 |" in out.stdout
    bad = subprocess.run([sys.executable, os.path.join(root, "tools", "compare_runs.py"), "--saved",
                          f"--model_dirs={tmp_path / 'a'},{tmp_path / 'd'}"],
                         capture_output=True, text=True, cwd=tmp_path, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error:")
