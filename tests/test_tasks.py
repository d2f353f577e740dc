"""Task readers on the real GLUE/SuperGLUE files, errors with file and line."""
import os

import pytest

from virt_tf.data import tasks


@pytest.mark.parametrize("name,sub,train,dev", [
    ("rte", "rte", 2490, 277), ("mrpc", "mrpc", 3668, 408),
    ("mnli", "bench/mnli", None, 9815), ("qqp", "bench/qqp", None, 20215)])
def test_real_files(shared_data, name, sub, train, dev):
    task = tasks.get_task(name)
    d = os.path.join(shared_data, sub)
    tr = tasks.read_split(task, d, "train")
    dv = tasks.read_split(task, d, "dev")
    if train:
        assert len(tr) == train
    assert len(dv) == dev
    assert {e.label for e in dv} == set(range(task.num_labels))


def test_rte_labels_and_mrpc_bom(shared_data):
    rte = tasks.read_split(tasks.get_task("rte"), os.path.join(shared_data, "rte"), "dev")
    assert sum(e.label == 0 for e in rte) == 146  # entailment
    mrpc = tasks.read_split(tasks.get_task("mrpc"), os.path.join(shared_data, "mrpc"), "train")
    assert sum(e.label == 1 for e in mrpc) == 2474
    assert mrpc[0].text_a.startswith("Amrozi")


def test_boolq_string_labels(shared_data):
    ex = tasks.read_split(tasks.get_task("boolq"), os.path.join(shared_data, "boolq"), "dev")
    assert len(ex) == 3270 and sum(e.label for e in ex) == 2033


def test_hold_out_is_seeded_and_disjoint():
    ex = [tasks.Example(str(i), "b", i % 2) for i in range(100)]
    tr1, tu1 = tasks.hold_out(ex, 0.1, seed=3)
    tr2, tu2 = tasks.hold_out(ex, 0.1, seed=3)
    _, tu3 = tasks.hold_out(ex, 0.1, seed=4)
    assert tu1 == tu2 and tr1 == tr2 and len(tu1) == 10 and len(tr1) == 90
    assert tu1 != tu3
    assert not set(e.text_a for e in tu1) & set(e.text_a for e in tr1)


def test_pairs_task_jsonl_and_tsv(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"q": "a", "p": "b", "y": "yes"}\n'
                                          '{"q": "c", "p": "d", "y": "no"}\n')
    labels = tasks.infer_pair_labels(str(tmp_path / "train.jsonl"), "y")
    assert labels == ("no", "yes")
    task = tasks.get_task("pairs", labels=labels, a_field="q", b_field="p", label_field="y")
    ex = tasks.read_split(task, str(tmp_path), "train")
    assert [e.label for e in ex] == [1, 0]
    (tmp_path / "dev.tsv").write_text("text_a\ttext_b\tlabel\nx\ty\t0\nz\tw\t1\n")
    task2 = tasks.get_task("pairs", labels=("0", "1"))
    assert [e.label for e in tasks.read_split(task2, str(tmp_path), "dev")] == [0, 1]


def test_errors_name_file_and_line(tmp_path):
    task = tasks.get_task("rte")
    (tmp_path / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n"
                                        "0\ta\tb\tentailment\n1\ta\tb\n")
    with pytest.raises(tasks.DataError, match=r"train.tsv:3: expected 4"):
        tasks.read_split(task, str(tmp_path), "train")
    stats = tasks.ReadStats()
    assert len(tasks.read_split(task, str(tmp_path), "train", True, stats)) == 1
    assert stats.skipped == 1
    (tmp_path / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(tasks.DataError, match=r"dev.tsv:2: unknown label 'maybe'"):
        tasks.read_split(task, str(tmp_path), "dev")
    with pytest.raises(tasks.DataError, match="file not found"):
        tasks.read_split(task, str(tmp_path / "none"), "dev")


def test_a_missing_file_names_every_layout_the_task_reads(tmp_path):
    (tmp_path / "dev_matched.jsonl").write_text('{"text_a": "a", "text_b": "b", '
                                                '"label": "neutral"}\n', encoding="utf-8")
    with pytest.raises(tasks.DataError) as raised:
        tasks.read_split(tasks.get_task("mnli"), str(tmp_path), "train")
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'train.tsv'}: file not found (task mnli, split train)")
    assert "none of train.tsv or train.jsonl" in message
    assert "dev_matched: " in message and "dev_mismatched: " in message


def test_a_bad_tune_fraction_is_a_config_error():
    with pytest.raises(tasks.ConfigError, match="tune fraction must be in"):
        tasks.hold_out([], fraction=1.5)


class _NoTfds:
    """A `sys.meta_path` finder that refuses and records any import of tensorflow_datasets."""

    def __init__(self):
        self.asked = []

    def find_spec(self, name, path=None, target=None):  # pylint: disable=unused-argument
        if name.split(".")[0] == "tensorflow_datasets":
            self.asked.append(name)
            raise ImportError(f"{name} imported by the test of a run without network")
        return None


def test_without_network_one_error_names_data_dir_and_the_layouts(monkeypatch, tmp_path):
    import sys
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))   # nothing prepared there
    probes = []
    monkeypatch.setattr(tasks, "download_reachable", lambda *a, **k: probes.append(a) or False)
    blocker = _NoTfds()
    monkeypatch.setattr(sys, "meta_path", [blocker] + sys.meta_path)
    monkeypatch.delitem(sys.modules, "tensorflow_datasets", raising=False)
    for name in ("rte", "mnli", "boolq"):
        task = tasks.get_task(name)
        with pytest.raises(tasks.DataError) as raised:
            tasks.read_split(task, None, "train")
        message = str(raised.value)
        assert message.startswith(f"no --data_dir given and {tasks.TFDS_DOWNLOAD_HOST}, where "
                                  f"tensorflow-datasets downloads {task.tfds_name}, cannot be "
                                  "reached")
        assert "give --data_dir=DIR" in message and message.endswith(
            f"(task {name} reads {tasks.layouts(task)})")
    assert len(probes) == 3 and blocker.asked == []
    with pytest.raises(tasks.DataError, match=r"task pairs has no tensorflow-datasets source; "
                                              r"give --data_dir=DIR.*train: train.jsonl or"):
        tasks.read_split(tasks.get_task("pairs"), None, "train")
    assert len(probes) == 3   # no source: nothing to probe


def test_a_prepared_dataset_needs_no_probe(monkeypatch, tmp_path):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert not tasks.tfds_prepared(tasks.get_task("rte"))
    (tmp_path / "glue" / "rte" / "2.0.0").mkdir(parents=True)
    assert tasks.tfds_prepared(tasks.get_task("rte"))
    assert not tasks.tfds_prepared(tasks.get_task("mrpc"))


def test_the_probe_is_one_short_attempt():
    import socket
    import time
    # A host that takes the connection and never answers (the TLS handshake waits).
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        start = time.monotonic()
        assert not tasks.download_reachable(f"127.0.0.1:{server.getsockname()[1]}",
                                            timeout=0.5)
        assert time.monotonic() - start < 2.0
    finally:
        server.close()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()   # nobody listens on it: refused at once
    assert not tasks.download_reachable(f"127.0.0.1:{port}", timeout=2.0)


# The train command with the download host made unreachable: what `python -m virt_tf.train`
# runs, in a fresh process that records whether tensorflow_datasets was imported.
OFFLINE_TRAIN = """
import sys
from virt_tf.data import tasks
tasks.download_reachable = lambda *args, **kwargs: False
from virt_tf import train
from virt_tf.cli.common import run
try:
    run(train._train, argv=sys.argv)
finally:
    print("tensorflow_datasets imported:", "tensorflow_datasets" in sys.modules)
"""


def test_the_train_command_without_data_dir_and_network_exits_2(tmp_path, repo_dir):
    import subprocess
    import sys
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=repo_dir,
               TFDS_DATA_DIR=str(tmp_path / "tfds"))
    proc = subprocess.run([sys.executable, "-c", OFFLINE_TRAIN, "--task=rte",
                           "--encoder_preset=tiny", f"--model_dir={tmp_path / 'run'}"],
                          cwd=repo_dir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert errors == [proc.stderr.strip().splitlines()[-1]]
    assert errors[0].startswith("error: DataError: no --data_dir given and ")
    assert errors[0].endswith(f"(task rte reads {tasks.layouts(tasks.get_task('rte'))})")
    assert "Traceback" not in proc.stderr
    assert "tensorflow_datasets imported: False" in proc.stdout
