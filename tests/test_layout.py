"""The shape of the house (WORKSPACE.md): layers as folders, commands that only parse flags,
no import circle, every deferred import with its reason, tests that import the library only.

Read from the source with `ast`; nothing here imports TensorFlow.
"""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "virt_tf")
COMMANDS = {"virt_tf.train", "virt_tf.evaluate", "virt_tf.export", "virt_tf.encode",
            "virt_tf.score", "virt_tf.index", "virt_tf.search"}
# The layers a reader should see from `ls virt_tf/`.
LAYERS = {"training", "evaluation", "inference", "cli", "data", "models", "heads", "modeling",
          "reproduction", "benchmarks"}
# Why an import may sit inside a function: its comment names one of these.
DEFER_REASONS = ("tensorflow", "optional", "light", "--help", "fast", "circular", "openvino",
                 "rare", "heavy", "subprocess", "lazy", "worker", "matplotlib", "plot")


def _modules():
    """``{dotted name: (path, ast tree, source lines)}`` of every module of the package."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                rel = rel[: -len(".__init__")] if rel.endswith(".__init__") else rel
                with open(path, encoding="utf-8") as f:
                    source = f.read()
                out[rel] = (path, ast.parse(source), source.splitlines())
    return out


MODULES = _modules()


def _imported(module, tree):
    """The package modules ``module`` imports anywhere (at the top or inside functions)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
            found.update(n for n in names if n in MODULES)
            if node.module in MODULES and not any(n in MODULES for n in names):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
    found.discard(module)
    return found


def _cycle(graph):
    """One import circle of ``graph`` as a list of modules, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, stack)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [])
            if found:
                return found
    return None


def test_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle():
    graph = {name: _imported(name, tree) for name, (_, tree, _) in MODULES.items()}
    # a package's __init__ importing its own submodules is not a circle of the library
    graph = {k: {m for m in v if not k.startswith(m + ".")} for k, v in graph.items()}
    assert _cycle(graph) is None


def test_the_package_shows_its_layers():
    top = sorted(f for f in os.listdir(PACKAGE) if f.endswith(".py"))
    assert len(top) <= 13, top  # 13: the search commands index.py, search.py are entry points
    folders = {f for f in os.listdir(PACKAGE)
               if os.path.isfile(os.path.join(PACKAGE, f, "__init__.py"))}
    assert LAYERS <= folders, LAYERS - folders


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n not in COMMANDS
                                        and not n.startswith("virt_tf.cli")))
def test_library_modules_read_no_flags(name):
    _, tree, _ = MODULES[name]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "FLAGS":
            pytest.fail(f"{name} reads absl FLAGS at line {node.lineno}")


def test_library_modules_import_no_command():
    for name, (_, tree, _) in MODULES.items():
        if name in COMMANDS or name.startswith("virt_tf.cli"):
            continue
        bad = {m for m in _imported(name, tree) if m in COMMANDS or m.startswith("virt_tf.cli")}
        assert not bad, f"{name} imports {sorted(bad)}"


def _deferred_imports(tree):
    """``(function, import node)`` of every import inside a function."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    yield node, inner


def _reason_text(tree, function, node, lines):
    """Where the reason of a deferred import is written: the comments on its lines and on
    the comment lines just above it, the docstring of its function, and the module's
    docstring when a comment points to it."""
    comments = [line.split("#", 1)[1] for line in lines[node.lineno - 1: node.end_lineno]
                if "#" in line]
    above = node.lineno - 2
    while above >= 0 and lines[above].strip().startswith("#"):
        comments.append(lines[above])
        above -= 1
    text = " ".join(comments) + " " + (ast.get_docstring(function) or "")
    if "docstring" in text:
        text += " " + (ast.get_docstring(tree) or "")
    return text.lower()


def test_reason_text_reads_comments_not_the_import():
    source = "def f():\n    import tensorflow as tf  # pylint: disable=x\n"
    tree = ast.parse(source)
    (function, node), = _deferred_imports(tree)
    text = _reason_text(tree, function, node, source.splitlines())
    assert not any(reason in text for reason in DEFER_REASONS)


def test_every_deferred_import_says_why():
    missing = []
    for name, (_, tree, lines) in MODULES.items():
        for function, node in _deferred_imports(tree):
            text = _reason_text(tree, function, node, lines)
            if not any(reason in text for reason in DEFER_REASONS):
                missing.append(f"{name}:{node.lineno}")
    assert not missing, f"imports inside functions without a reason: {missing}"


def test_tests_import_the_library_not_tools():
    here = os.path.dirname(os.path.abspath(__file__))
    tools = {f[:-3] for f in os.listdir(os.path.join(ROOT, "tools")) if f.endswith(".py")}
    for name in os.listdir(here):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(here, name), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] not in tools | {"tools"}, (name, node.module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] not in tools | {"tools"}, (name, alias.name)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_exits_zero(command):
    """``--help`` is a request, not an error: exit 0 (scripts chain ``cmd --help && ...``)."""
    proc = subprocess.run([sys.executable, "-m", command, "--help"], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--model_dir" in proc.stdout


def test_library_packages_reach_their_modules_as_attributes():
    """``virt_tf.reproduction.grid`` works without importing it by hand (a fresh process:
    in this one another test may have imported it already)."""
    code = ("import sys, virt_tf.reproduction as r; r.grid.load_grid(profile='quick'); "
            "r.report; print('tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"  # the planner's modules stay light
