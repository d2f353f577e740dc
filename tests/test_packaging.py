"""pyproject.toml: the wheel holds the package and its configs; installed elsewhere, the entry
points run and find their configs; the pins agree with requirements.txt."""
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["virt-tf-train", "virt-tf-evaluate", "virt-tf-export", "virt-tf-encode",
           "virt-tf-score", "virt-tf-index", "virt-tf-search"]


def _pyproject():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _requirements(name="requirements.txt"):
    pins = []
    with open(os.path.join(REPO, name), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                pins.append(line)
    return pins


def test_pins_agree_with_requirements_and_packages_are_listed():
    project = _pyproject()
    extras = project["project"]["optional-dependencies"]
    # requirements.txt is the main install: the library, the tests and the retrieval extra
    deps = project["project"]["dependencies"] + extras["test"] + extras["retrieval"]
    assert sorted(deps) == sorted(_requirements())
    # pip install '.[openvino]' installs what requirements-openvino.txt pins
    assert sorted(project["project"]["optional-dependencies"]["openvino"]) == sorted(
        _requirements("requirements-openvino.txt"))
    listed = set(project["tool"]["setuptools"]["packages"])
    found = {os.path.relpath(root, REPO).replace(os.sep, ".")
             for root, _, files in os.walk(os.path.join(REPO, "virt_tf"))
             if "__init__.py" in files}
    assert found | {"virt_tf.configs"} == listed  # a new subpackage must be listed
    assert sorted(project["project"]["scripts"]) == sorted(SCRIPTS)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the sources (the work tree stays clean)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("virt_tf", "configs"):
        shutil.copytree(os.path.join(REPO, name), src / name, ignore=ignore)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(tmp / "dist"), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheels = list((tmp / "dist").glob("virt_tf-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_the_configs_and_the_entry_points(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
    for path in ("base.yaml", "grid.yaml", "tasks/mnli.yaml", "models/virt.yaml",
                 "presets/minilm_l6.yaml"):
        assert f"virt_tf/configs/{path}" in names, path
    configs = {n for n in os.listdir(os.path.join(REPO, "configs", "models"))}
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("virt_tf/configs/models/")} \
        == configs
    assert "virt_tf/reproduction/grid.py" in names and "virt_tf/train.py" in names
    assert not any(n.startswith(("tests/", "tools/")) for n in names)
    for script in SCRIPTS:
        assert f"{script} = virt_tf.cli.console:" in entry_points


def test_installed_package_runs_from_another_folder(wheel, tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                           "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="2")
    check = ("import virt_tf, virt_tf.config as c, virt_tf.inference.matcher; "
             "from virt_tf.reproduction import grid; "
             "print(virt_tf.__file__); print(c.CONFIG_DIR); "
             "print(c.load_config('mnli', 'virt')['epochs']); "
             "print(grid.load_grid(profile='sample')['profile']); print(callable(virt_tf.load))")
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          cwd=str(elsewhere), env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    module, config_dir, epochs, profile, load = proc.stdout.split()
    assert module.startswith(str(site)) and config_dir == str(site / "virt_tf" / "configs")
    assert (epochs, profile, load) == ("5", "sample", "True")
    # --help prints the flags and exits 0 (absl alone would exit 1), without a traceback
    proc = subprocess.run([sys.executable, "-m", "virt_tf.train", "--help"],
                          capture_output=True, text=True, cwd=str(elsewhere), env=env,
                          timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "--model_dir" in proc.stdout and "deformer" in proc.stdout  # models from configs
    script = site / "bin" / "virt-tf-evaluate"
    assert script.exists()
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                          text=True, cwd=str(elsewhere), env=env, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "--model_dir" in proc.stdout and "--data_dir" in proc.stdout
    # an installed command reports a bad flag as `python -m` does: one line, exit 2
    proc = subprocess.run([sys.executable, str(script), "--bogus=1"], capture_output=True,
                          text=True, cwd=str(elsewhere), env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ConfigError: Unknown")
