"""Every command logs its progress in one format (`virt_tf.cli.common.LOG_FORMAT`).

Two commands on a tiny saved model, `evaluate` and `encode`, each in its own process: every
Python log line on stderr reads ``YYYY-MM-DD HH:MM:SS LEVEL module: message`` and none has
absl's own ``I1205 01:37:21.388430 140348923960192 file.py:110]`` prefix; the results stay
on stdout.
"""
import json
import os
import re
import subprocess
import sys

from conftest import save_tiny_classifier

OUR_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
                      r"\w+: ")
ABSL_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")


def test_two_commands_log_in_one_format(tmp_path, repo_dir, shared_data, vocab_file):
    model_dir = tmp_path / "siamese"
    save_tiny_classifier(model_dir, "siamese", vocab_file, 32)
    texts = tmp_path / "texts.tsv"
    texts.write_text("id\ttext\na\tthe cat sat on the mat\nb\ta dog runs fast\n",
                     encoding="utf-8")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=repo_dir)
    commands = {
        "evaluate": ["-m", "virt_tf.evaluate", f"--model_dir={model_dir}",
                     f"--data_dir={os.path.join(shared_data, 'rte')}", "--max_eval_examples=8"],
        "encode": ["-m", "virt_tf.encode", f"--model_dir={model_dir}", f"--input={texts}",
                   f"--output={tmp_path / 'states.npz'}"]}
    procs = {name: subprocess.Popen([sys.executable, *args], cwd=repo_dir, env=env,  # pylint: disable=consider-using-with
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in commands.items()}
    logged = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        assert not [l for l in err.splitlines() if ABSL_LINE.match(l)], err[-3000:]
        logged[name] = [l for l in err.splitlines() if OUR_LINE.match(l)]
        if name == "evaluate":
            assert json.loads(out)["examples"] == 8   # the result: on stdout, not logged
    assert any(": metrics: {" in l and " INFO evaluate: " in l for l in logged["evaluate"]), \
        logged["evaluate"]
    assert any(" INFO encode: encoded {" in l for l in logged["encode"]), logged["encode"]
