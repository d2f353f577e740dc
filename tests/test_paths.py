"""Every path flag of every entry point and tool is checked before any work starts.

A table (`ENTRY_POINTS`) lists, by hand, each command, the flags it must give for a
run to get going, and each of its path flags with its kind. For every path flag and
every mistake that applies to its kind (missing, a file where a folder is wanted, a
folder where a file is wanted, an empty file, a folder that is not writable, an
output whose parent is a file, a folder that is not a model or not a finished index of
``virt_tf.index``) the real command runs in a subprocess with only that
path wrong, and must end with exit 2, one ``error:`` line (the last) naming the flag
and the path, no traceback, and nothing new on disk. The checks run before
TensorFlow is imported, so each case takes a fraction of a second.

"Not writable": the tests run as root here, where ``chmod 555`` does not stop a write
and a read-only mount is not available, so those cases also run under
``tests/eacces.py``, which makes every Python write under the folder fail with
EACCES as the kernel would; as another user the ``chmod`` alone does it.

A second table checks flag errors (an unknown flag, a value of the wrong type, an
enum value outside its choices, a stray argument): one ``error: ConfigError:`` line
and exit 2 for every command, instead of absl's "FATAL Flags parsing error".
"""
import concurrent.futures
import errno
import importlib
import json
import os
import stat
import subprocess
import sys

import pytest

from virt_tf.cli import paths

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EACCES_RUNNER = os.path.join(REPO, "tests", "eacces.py")
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

IN_FILE, IN_DIR, MODEL, CKPT, OUT_FILE, OUT_DIR = (
    "input file", "input folder", "model folder", "checkpoint", "output file", "output folder")
INDEX = IN_DIR + " (an index)"  # an input folder written by virt_tf.index

# command -> (how to run it, its module for PATH_FLAGS, flags that let it start,
#             {path flag: kind}); "{good:KIND}" is a valid path of that kind.
ENTRY_POINTS = {
    "train": (["-m", "virt_tf.train"], "virt_tf.train",
              ["--task=rte", "--model=cross", "--model_dir={good:out_dir}"],
              {"data_dir": IN_DIR, "teacher_dir": MODEL, "init_checkpoint": CKPT,
               "vocab_file": IN_FILE, "config": IN_FILE + " (may be empty)",
               "unlabelled": IN_FILE, "model_dir": OUT_DIR, "debug_worker_weights": OUT_DIR}),
    "evaluate": (["-m", "virt_tf.evaluate"], "virt_tf.evaluate",
                 ["--model_dir={good:model}"],
                 {"model_dir": MODEL, "data_dir": IN_DIR, "output": OUT_FILE}),
    "encode": (["-m", "virt_tf.encode"], "virt_tf.encode",
               ["--model_dir={good:model}", "--input={good:in_file}", "--output={good:out_file}"],
               {"model_dir": MODEL, "input": IN_FILE, "output": OUT_FILE,
                "openvino_model": IN_DIR}),
    "score": (["-m", "virt_tf.score"], "virt_tf.score",
              ["--model_dir={good:model}", "--cache={good:in_file}", "--pairs={good:in_file}",
               "--output={good:out_file}"],
              {"model_dir": MODEL, "cache": IN_FILE, "pairs": IN_FILE, "output": OUT_FILE}),
    "export": (["-m", "virt_tf.export"], "virt_tf.export",
               ["--model_dir={good:model}", "--export_dir={good:out_dir}"],
               {"model_dir": MODEL, "export_dir": OUT_DIR}),
    "reproduce": (["tools/reproduce.py"], "reproduce",
                  ["--tasks=no_such_task", "--output={good:out_dir}", "--data_root={good:in_dir}"],
                  {"data_root": IN_DIR, "output": OUT_DIR}),
    "compare_runs": (["tools/compare_runs.py"], "compare_runs",
                     ["--model_dirs={good:model},{good:model}"],
                     {"model_dirs": MODEL, "data_dir": IN_DIR, "output": OUT_FILE}),
    "profile_flops": (["tools/profile_flops.py"], "profile_flops",
                      ["--encoder=tiny", "--models=siamese", "--repeats=1", "--warmup=0"],
                      {"output": OUT_FILE}),
    "benchmark_speed": (["tools/benchmark_speed.py"], "benchmark_speed",
                        ["--encoder_preset=tiny", "--models=siamese", "--precisions=float32",
                         "--buckets=false", "--steps=1", "--warmup=0", "--encode_texts=2",
                         "--include_before=false", "--data_dir={good:in_dir}",
                         "--encode_file={good:in_file}"],
                        {"data_dir": IN_DIR, "encode_file": IN_FILE, "baseline_json": IN_FILE,
                         "st_model": IN_DIR, "sentence_transformers_python": IN_FILE,
                         "output": OUT_FILE}),
    "virt_alignment": (["tools/virt_alignment.py"], "virt_alignment",
                       ["--teacher_dir={good:model}"],
                       {"teacher_dir": MODEL, "student_dirs": MODEL, "init_checkpoint": CKPT,
                        "data_dir": IN_DIR, "output": OUT_FILE, "plot": OUT_FILE}),
    "plot_attention": (["tools/plot_attention.py"], "plot_attention",
                       ["--student_dir={good:model}", "--teacher_dir={good:model}",
                        "--output={good:out_file}"],
                       {"student_dir": MODEL, "teacher_dir": MODEL, "output": OUT_FILE}),
    "index": (["-m", "virt_tf.index"], "virt_tf.index",
              ["--model_dir={good:model}", "--corpus={good:in_file}", "--output={good:out_dir}"],
              {"model_dir": MODEL, "corpus": IN_FILE, "output": OUT_DIR,
               "openvino_model": IN_DIR}),
    "search": (["-m", "virt_tf.search"], "virt_tf.search",
               ["--index={good:index}", "--queries={good:in_file}", "--output={good:out_file}"],
               {"index": INDEX, "queries": IN_FILE, "output": OUT_FILE, "teacher_dir": MODEL,
                "model_dir": MODEL, "qrels": IN_FILE}),
    "build_qqp_retrieval": (["tools/build_qqp_retrieval.py"], "build_qqp_retrieval",
                            ["--pairs={good:in_file}", "--output={good:out_dir}"],
                            {"pairs": IN_FILE, "output": OUT_DIR}),
    "summarize_runs": (["tools/summarize_runs.py"], None, [], {"ROOT": IN_DIR}),
    "screen_table": (["tools/screen_table.py"], "screen_table",
                     ["--screen={good:in_file}", "--teacher_dir={good:model}"],
                     {"screen": IN_FILE, "teacher_dir": MODEL, "json": OUT_FILE,
                      "update_doc": IN_FILE}),
}

# (command, list flag of several paths) -> the kind of the good path put before the bad one
LIST_FLAGS = {("compare_runs", "model_dirs"): "model", ("virt_alignment", "student_dirs"): "model",
              ("score", "cache"): "in_file", ("build_qqp_retrieval", "pairs"): "in_file"}

# kind -> the mistakes that apply: (name, how to make the bad path, what the line says)
MISTAKES = {
    IN_FILE: [("missing", "missing", "file not found"),
              ("a folder where a file is wanted", "folder", "is a folder, not a file"),
              ("an empty file", "empty_file", "the file is empty")],
    IN_FILE + " (may be empty)": [("missing", "missing", "file not found"),
                                  ("a folder where a file is wanted", "folder",
                                   "is a folder, not a file")],
    IN_DIR: [("missing", "missing", "folder not found"),
             ("a file where a folder is wanted", "file", "is a file, not a folder"),
             ("an empty file where a folder is wanted", "empty_file", "is a file, not a folder")],
    INDEX: [("missing", "missing", "folder not found"),
            ("a file where a folder is wanted", "file", "is a file, not a folder"),
            ("an empty file where a folder is wanted", "empty_file", "is a file, not a folder"),
            ("a folder that is not an index", "folder",
             "not an index written by virt_tf.index (no index.json)"),
            ("an index whose build has not finished", "unfinished_index",
             "its build has not finished"),
            ("an empty index.json", "empty_index", "index.json is not readable JSON"),
            ("an index.json of something else", "other_index", "not a virt_tf.index v1 index")],
    MODEL: [("missing", "missing", "folder not found"),
            ("a file where a folder is wanted", "file", "is a file, not a folder"),
            ("a folder that is not a model", "folder", "no model_config.json"),
            ("an empty model_config.json", "empty_model", "the file is empty")],
    CKPT: [("missing", "missing", "file not found"),
           ("an empty file", "empty_file", "the file is empty")],
    OUT_FILE: [("a folder where a file is wanted", "folder", "is a folder, not a file"),
               ("a file where its folder is wanted", "under_file",
                "cannot be created: {parent} is a file, not a folder"),
               ("not writable", "in_readonly", "not writable (Permission denied)")],
    OUT_DIR: [("a file where a folder is wanted", "file", "is a file, not a folder"),
              ("an empty file where a folder is wanted", "empty_file", "is a file, not a folder"),
              ("a file where its parent folder is wanted", "under_file",
               "cannot be created: {parent} is a file, not a folder"),
              ("not writable", "readonly", "is not writable (Permission denied)"),
              ("cannot be created in a read-only folder", "in_readonly",
               "cannot be created: {parent} is not writable (Permission denied)")],
}


def _good(root, kind):
    """A valid path of ``kind`` under ``root`` (outputs: not there yet)."""
    if kind == "in_file":
        path = root / "good.txt"
        path.write_text("good\n", encoding="utf-8")
    elif kind in ("in_dir",):
        path = root / "good_dir"
        path.mkdir(exist_ok=True)
    elif kind == "model":
        path = root / "good_model"
        path.mkdir(exist_ok=True)
        (path / "model_config.json").write_text("{}", encoding="utf-8")
    elif kind == "index":
        path = root / "good_index"
        path.mkdir(exist_ok=True)
        (path / "index.json").write_text(json.dumps({"format": "virt_tf.index", "version": 1}),
                                         encoding="utf-8")
    elif kind == "out_file":
        path = root / "fresh" / "result.json"
    else:
        path = root / "fresh_out"
    return str(path)


def _bad(root, how):
    """A bad path made by ``how`` under ``root``; returns (path, readonly folder or None)."""
    if how == "missing":
        return str(root / "no_such_thing"), None
    if how == "folder":
        (root / "a_folder").mkdir()
        return str(root / "a_folder"), None
    if how == "file":
        (root / "a_file.txt").write_text("text\n", encoding="utf-8")
        return str(root / "a_file.txt"), None
    if how == "empty_file":
        (root / "empty.txt").write_bytes(b"")
        return str(root / "empty.txt"), None
    if how == "empty_model":
        (root / "model").mkdir()
        (root / "model" / "model_config.json").write_bytes(b"")
        return str(root / "model"), None
    if how in ("unfinished_index", "empty_index", "other_index"):
        (root / "index").mkdir()
        name, text = {"unfinished_index": ("build.json", "{}"), "empty_index": ("index.json", ""),
                      "other_index": ("index.json", '{"format": "other", "version": 1}')}[how]
        (root / "index" / name).write_text(text, encoding="utf-8")
        return str(root / "index"), None
    if how == "under_file":
        (root / "a_file.txt").write_text("text\n", encoding="utf-8")
        return str(root / "a_file.txt" / "out"), None
    folder = root / "read_only"
    folder.mkdir()
    if how == "readonly":
        return str(folder), str(folder)
    return str(folder / "out"), str(folder)  # in_readonly


def _tree(root):
    """Every path under ``root`` with its size (files) — to see that nothing was added."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = "dir"
        for name in filenames:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = os.path.getsize(path)
    return out


def _cases():
    for command, (_, _, _, flags) in ENTRY_POINTS.items():
        for flag, kind in flags.items():
            for mistake, how, expected in MISTAKES[kind]:
                yield f"{command} {flag}: {mistake}", (command, flag, kind, how, expected)


CASES = dict(_cases())


def _command(command, args, readonly=None):
    runner, _, _, _ = ENTRY_POINTS[command]
    if runner[0] == "-m":
        target = runner
    else:
        target = [os.path.join(REPO, runner[0])]
    if readonly is not None and AS_ROOT:
        return [sys.executable, EACCES_RUNNER, readonly, *target, *args]
    return [sys.executable, *target, *args]


def _run_case(root, name, case):
    command, flag, kind, how, expected = case
    _, _, base, _ = ENTRY_POINTS[command]
    work = root / name.replace(" ", "_").replace(":", "").replace("/", "_")
    work.mkdir()
    bad, readonly = _bad(work, how)
    args = [a.replace("{good:out_dir}", _good(work, "out_dir"))
            .replace("{good:out_file}", _good(work, "out_file"))
            .replace("{good:in_dir}", _good(work, "in_dir"))
            .replace("{good:in_file}", _good(work, "in_file"))
            .replace("{good:model}", _good(work, "model"))
            .replace("{good:index}", _good(work, "index")) for a in base]
    if flag == "ROOT":
        args.append(bad)
    else:
        value = bad
        if (command, flag) in LIST_FLAGS:  # a bad path after a good one is found too
            value = f"{_good(work, LIST_FLAGS[command, flag])},{bad}"
        args = [a for a in args if not a.startswith(f"--{flag}=")] + [f"--{flag}={value}"]
    if readonly:
        os.chmod(readonly, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    before = _tree(work)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    try:
        proc = subprocess.run(_command(command, args, readonly), cwd=str(work), env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        if readonly:
            os.chmod(readonly, stat.S_IRWXU)
    after = _tree(work)
    parent = os.path.dirname(bad)
    return {"returncode": proc.returncode, "stderr": proc.stderr, "bad": bad,
            "expected": expected.format(parent=parent), "before": before, "after": after,
            "flag": "ROOT" if flag == "ROOT" else f"--{flag}"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run every case (two at a time): name -> what happened."""
    root = tmp_path_factory.mktemp("paths")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_run_case, root, name, case) for name, case in CASES.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_path_is_one_error_line_naming_flag_and_path(results, name):
    r = results[name]
    stderr = r["stderr"]
    assert r["returncode"] == 2, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.rstrip("\n").splitlines()
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr[-3000:]
    line = errors[0]
    assert line.startswith(("error: PathError: ", "error: MissingFileError: ")), line
    assert f"{r['flag']} {r['bad']}: " in line, (r["flag"], r["bad"], line)
    assert r["expected"] in line, (r["expected"], line)
    assert r["after"] == r["before"], "partial output left behind"


def test_every_command_and_path_flag_is_in_the_table():
    """The table above and the PATH_FLAGS each command declares name the same flags."""
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        for command, (_, module, _, flags) in ENTRY_POINTS.items():
            if module is None:
                continue
            declared = {s.name: s.kind for s in importlib.import_module(module).PATH_FLAGS}
            table = {f: k.split(" (")[0] for f, k in flags.items()}
            assert declared == table, command
    finally:
        sys.path.remove(os.path.join(REPO, "tools"))
    tools = {os.path.splitext(n)[0] for n in os.listdir(os.path.join(REPO, "tools"))}
    # the tools that take a path, all in the table (mutation_check and st_encode_speed
    # are helpers of other commands, not a user's entry point)
    assert tools - set(ENTRY_POINTS) == {"install", "mutation_check", "st_encode_speed",
                                         "mnli_models", "mnli_experiments",
                                         "rte_experiments", "recipe_screen"}


# ----------------------------------------------------------------------- flag errors
FLAG_ERRORS = {
    "unknown flag": (["--no_such_flag=1"], "no_such_flag"),
    "stray argument": (["stray_word"], "unexpected arguments: stray_word"),
}
WRONG_TYPE = {"train": "--epochs=two", "evaluate": "--batch_size=many",
              "encode": "--batch_size=many", "score": "--batch_size=many",
              "export": "--version=latest", "reproduce": "--epochs=two",
              "compare_runs": "--max_examples=all", "profile_flops": "--batch_size=many",
              "benchmark_speed": "--steps=few", "virt_alignment": "--max_examples=all",
              "plot_attention": "--text_a", "summarize_runs": None, "screen_table": None,
              "index": "--shard_size=many", "search": "--top_k=many",
              "build_qqp_retrieval": "--dev_fraction=much"}
WRONG_ENUM = {"train": "--model=nope", "profile_flops": "--encoder=nope",
              "index": "--backend=nope", "search": "--rerank=nope"}


def _flag_cases():
    for command in ENTRY_POINTS:
        for what, (args, expected) in FLAG_ERRORS.items():
            if command == "summarize_runs" and what == "unknown flag":
                args, expected = ["some_root", "--no_such_flag=1"], "--no_such_flag"
            if command == "summarize_runs" and what == "stray argument":
                args, expected = ["a_root", "stray_word"], "stray_word"
            yield f"{command}: {what}", (command, args, expected)
        if WRONG_TYPE[command]:
            flag = WRONG_TYPE[command]
            yield f"{command}: wrong type", (command, [flag], flag.split("=")[0].lstrip("-"))
        if command in WRONG_ENUM:
            yield f"{command}: enum value outside its choices", (
                command, [WRONG_ENUM[command]], "value should be one of")


FLAG_CASES = dict(_flag_cases())


@pytest.fixture(scope="module")
def flag_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("flags")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)

    def run(case):
        command, args, _ = case
        proc = subprocess.run(_command(command, args), cwd=str(root), env=env,
                              capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stderr

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run, case) for name, case in FLAG_CASES.items()}
        out = {name: f.result() for name, f in futures.items()}
    assert os.listdir(root) == []
    return out


@pytest.mark.parametrize("name", sorted(FLAG_CASES))
def test_flag_error_is_one_config_error_line(flag_results, name):
    returncode, stderr = flag_results[name]
    expected = FLAG_CASES[name][2]
    assert returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr and "FATAL" not in stderr, stderr[-3000:]
    lines = stderr.rstrip("\n").splitlines()
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr[-3000:]
    assert errors[0].startswith("error: ConfigError: ") and expected in errors[0], errors[0]


# ------------------------------------------------------------------ the helper itself
def test_checks_create_nothing_and_accept_good_paths(tmp_path):
    from virt_tf.cli import paths

    (tmp_path / "in.txt").write_text("x", encoding="utf-8")
    assert paths.check_output_dir("model_dir", str(tmp_path / "a" / "b" / "c"))
    assert paths.check_output_file("output", str(tmp_path / "x" / "y.json"))
    assert paths.check_output_dir("model_dir", str(tmp_path))
    assert paths.check_input_file("input", str(tmp_path / "in.txt"))
    assert paths.check_checkpoint("init_checkpoint", str(tmp_path))
    (tmp_path / "ckpt-3.index").write_bytes(b"i")
    assert paths.check_checkpoint("init_checkpoint", str(tmp_path / "ckpt-3"))
    assert sorted(os.listdir(tmp_path)) == ["ckpt-3.index", "in.txt"]


def test_os_error_under_a_user_path_is_a_user_error_elsewhere_a_bug(tmp_path):
    from virt_tf.cli import paths
    from virt_tf.errors import WriteError

    roots = [("model_dir", str(tmp_path / "run"))]
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run" / "ckpt-3"))
    with pytest.raises(WriteError) as info:
        with paths.os_errors_as_user_errors(roots):
            raise full
    message = str(info.value)
    assert message.startswith(f"--model_dir {tmp_path / 'run'}: {tmp_path / 'run' / 'ckpt-3'}: ")
    assert "No space left on device" in message and "the disk is full" in message
    assert isinstance(info.value, OSError) and info.value.__cause__ is full
    # the same error on a path the program made itself stays what it was: a bug
    own = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "scratch" / "x"))
    with pytest.raises(OSError) as info:
        with paths.os_errors_as_user_errors(roots):
            raise own
    assert info.value is own
    # an OS error that no path causes (a connection reset) is not the user's either
    reset = ConnectionResetError(errno.ECONNRESET, "reset", str(tmp_path / "run" / "x"))
    with pytest.raises(ConnectionResetError):
        with paths.os_errors_as_user_errors(roots):
            raise reset
    # a message without a file name (h5py) counts when it names the user's path
    h5 = OSError(f"Unable to create file (name = '{tmp_path / 'run' / 'm.h5'}', errno = 13)")
    with pytest.raises(WriteError, match="--model_dir"):
        with paths.os_errors_as_user_errors(roots):
            raise h5


def test_tensorflow_io_error_under_a_user_path_is_a_user_error(tmp_path):
    import tensorflow as tf
    from virt_tf.cli import paths
    from virt_tf.errors import WriteError

    roots = [("model_dir", str(tmp_path / "run"))]
    error = tf.errors.ResourceExhaustedError(None, None, f"{tmp_path / 'run'}/ckpt-3_temp: "
                                             "No space left on device")
    with pytest.raises(WriteError, match="the disk is full"):
        with paths.os_errors_as_user_errors(roots):
            raise error
    other = tf.errors.InvalidArgumentError(None, None, f"{tmp_path / 'run'}: bad shape")
    with pytest.raises(tf.errors.InvalidArgumentError):
        with paths.os_errors_as_user_errors(roots):
            raise other


def test_write_fault_spec():
    from virt_tf.training.safe_writes import parse_write_fault

    assert parse_write_fault("checkpoint@3:ENOSPC") == ("checkpoint", 3, errno.ENOSPC)
    assert parse_write_fault("model:EACCES") == ("model", None, errno.EACCES)
    assert parse_write_fault(None) is None
    for bad in ("checkpoint:ENOSPC", "model@2:ENOSPC", "checkpoint@x:ENOSPC",
                "checkpoint@3:EIO", "weights:ENOSPC"):
        with pytest.raises(ValueError):
            parse_write_fault(bad)


def test_eacces_runner_refuses_writes_under_its_folder(tmp_path):
    """The simulation the "not writable" cases rely on does refuse a write (as root too)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    code = ("import tempfile, sys\n"
            "try:\n    tempfile.mkstemp(dir=sys.argv[1])\nexcept PermissionError as e:\n"
            "    print('refused', e.errno)\n")
    script = tmp_path / "probe.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.run([sys.executable, EACCES_RUNNER, str(folder), str(script), str(folder)],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == f"refused {errno.EACCES}", proc.stderr
    assert os.listdir(folder) == []


def test_a_full_disk_is_refused_before_any_work(tmp_path, monkeypatch):
    from virt_tf.cli import paths
    from virt_tf.errors import PathError

    monkeypatch.setattr(paths, "_free_bytes", lambda folder: 4096)
    with pytest.raises(PathError, match=r"--model_dir .*: the disk is full \(4096 bytes free\)"):
        paths.check_output_dir("model_dir", str(tmp_path / "run"))
    with pytest.raises(PathError, match=r"--output .*: the disk is full"):
        paths.check_output_file("output", str(tmp_path / "x.json"))
    assert os.listdir(tmp_path) == []


def test_os_error_under_an_input_is_a_path_error_not_a_write_error(tmp_path):
    from virt_tf.cli import paths
    from virt_tf.errors import PathError, WriteError

    roots = [("data_dir", str(tmp_path / "data"), paths.INPUT_DIR),
             ("model_dir", str(tmp_path / "run"), paths.OUTPUT_DIR)]
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES),
                             str(tmp_path / "data" / "train.tsv"))
    with pytest.raises(PathError) as info:
        with paths.os_errors_as_user_errors(roots):
            raise denied
    assert not isinstance(info.value, WriteError)
    assert str(info.value).startswith(f"--data_dir {tmp_path / 'data'}: ")
    assert "Permission denied (not readable" in str(info.value)


def test_default_data_root(monkeypatch, tmp_path):
    repo = str(tmp_path / "project")
    monkeypatch.delenv("VIRT_TF_DATA", raising=False)
    assert paths.default_data_root(repo) == str(tmp_path / "shared" / "data")
    monkeypatch.setenv("VIRT_TF_DATA", "/elsewhere/data")
    assert paths.default_data_root(repo) == "/elsewhere/data"
    monkeypatch.setenv("VIRT_TF_DATA", "")   # set but empty: the default again
    assert paths.default_data_root(repo) == str(tmp_path / "shared" / "data")
