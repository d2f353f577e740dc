"""The docs as tests: every fenced Python and shell block of README.md and docs/*.md runs.

The blocks of one page run in order in one scratch folder laid out like the repository's
root (`tools/` and `configs/` link to the repository's, `../shared/data` to the shared
data, `python` and `python3` are this interpreter, the package is on PYTHONPATH), so a
command runs as written from the root; nothing is written into the repository (checked).
Python blocks share one namespace a page (a later block uses an earlier one's names) and
run in this process; shell blocks run in bash with ``set -euo pipefail``.

A block that does not run here says why on its first line, visible in the rendered page:

    # not run by the tests: <reason>      (a real-size run, a server, an install)
    # exits <code>: <reason>              (runs; it must end with that exit code)

Any other fence names a language that is not code (``text``, ``json``, ...): output and
file contents. A page may take some things as already there (`GIVEN`: a trained model
directory, a file of texts), made before its blocks run.
"""
import contextlib
import dataclasses
import os
import pathlib
import re
import subprocess
import sys
import traceback

import pytest

from conftest import save_tiny_classifier

REPO = pathlib.Path(__file__).resolve().parent.parent
PAGES = ["README.md"] + sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))
PYTHON = frozenset({"python", "py"})
SHELL = frozenset({"bash", "sh", "shell"})
NOT_CODE = frozenset({"text", "json", "jsonl", "yaml", "toml", "tsv", "csv", "diff"})
FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([^\s`]*)")
SKIP = re.compile(r"#\s*not run by the tests\b:?(.*)$")
EXITS = re.compile(r"#\s*exits\s+(\d+)\b:?(.*)$")
LINKED = ("tools", "configs")  # the scratch root's links to the repository
SHELL_TIMEOUT = 900  # seconds; a block that runs longer wants a marker

# What a page takes as already there: a trained model directory (a tiny random model saved
# as training saves it) or a file with the given text. Paths are relative to the scratch root.
TEXTS = "id\ttext\nt1\tA man is playing a guitar.\nt2\tSomeone plays music.\nt3\tIt rains.\n"
GIVEN = {
    "docs/api.md": {"runs/rte_virt": "virt"},
    "docs/precision.md": {"runs/rte/virt": "virt", "texts.tsv": TEXTS,
                          "pairs.tsv": "id_a\tid_b\nt1\tt2\nt3\tt2\n"},
    "docs/serving.md": {
        "runs/boolq/virt": "virt",
        "questions.tsv": "id\ttext\nq1\tis the sky blue?\nq2\tcan fish fly?\n",
        "passages.tsv": "id\ttext\np1\tThe sky is blue on a clear day.\np2\tSome fish glide.\n",
        "pairs.tsv": "id_a\tid_b\nq1\tp1\nq2\tp2\nq1\tp2\n"},
}
MODEL_KINDS = {"virt", "siamese", "cross"}  # a GIVEN value naming a model kind makes a model


class MarkerError(ValueError):
    """A first-line marker without a reason, or one a block's language cannot take."""


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced block: ``line`` is the 1-based line of its first content line."""
    page: str
    line: int
    lang: str
    body: str

    @property
    def where(self):
        return f"{self.page}:{self.line}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a block is treated: ``run`` or not, and the exit code a shell block must end with."""
    run: bool
    exit_code: int = 0
    reason: str = ""


def fenced_blocks(text, page="<page>"):
    """Every fenced block of a Markdown ``text``, in order (indentation of the fence removed)."""
    lines = text.split("\n")
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        close = re.compile(r"^ {0,3}" + re.escape(fence[0]) + "{%d,}\\s*$" % len(fence))
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        body = "\n".join(l[indent:] if l[:indent].strip() == "" else l for l in lines[i + 1:j])
        blocks.append(Block(page, i + 2, lang, body + "\n"))
        i = j + 1
    return blocks


def plan(block):
    """The `Plan` of a code block, from its first line (`MarkerError` if it is malformed)."""
    first = next((l.strip() for l in block.body.splitlines() if l.strip()), "")
    m = SKIP.match(first)
    if m:
        if not m.group(1).strip():
            raise MarkerError(f"{block.where}: 'not run by the tests' without a reason")
        return Plan(False, reason=m.group(1).strip())
    m = EXITS.match(first)
    if m:
        if not m.group(2).strip():
            raise MarkerError(f"{block.where}: 'exits {m.group(1)}' without a reason")
        if block.lang not in SHELL:
            raise MarkerError(f"{block.where}: only a shell block can be marked 'exits N'")
        return Plan(True, int(m.group(1)), m.group(2).strip())
    return Plan(True)


def page_blocks(page):
    return fenced_blocks((REPO / page).read_text(encoding="utf-8"), page)


def code_blocks(page):
    return [b for b in page_blocks(page) if b.lang in PYTHON | SHELL]


def runnable(page):
    """Whether a page has a block to run (a malformed marker counts as one: it must fail)."""
    for block in code_blocks(page):
        try:
            if plan(block).run:
                return True
        except MarkerError:
            return True
    return False


def run_blocks(blocks, root, env):
    """Run ``blocks`` in order in ``root``: the first failure's message, or None.

    Python blocks share one namespace and run in this process with ``root`` as the current
    folder; tracebacks name the Markdown file and line. Shell blocks run in bash.
    """
    namespace = {"__name__": "__main__"}
    for block in blocks:
        how = plan(block)
        if not how.run:
            continue
        if block.lang in PYTHON:
            source = "\n" * (block.line - 1) + block.body  # line numbers of the page
            try:
                with contextlib.chdir(root):
                    exec(compile(source, str(REPO / block.page), "exec"), namespace)  # pylint: disable=exec-used
            except BaseException:  # pylint: disable=broad-except  (SystemExit too)
                return f"{block.where}: python block failed:\n{traceback.format_exc(limit=-6)}"
        else:
            proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + block.body], cwd=root,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, timeout=SHELL_TIMEOUT, check=False)
            if proc.returncode != how.exit_code:
                return (f"{block.where}: shell block exited {proc.returncode}, expected "
                        f"{how.exit_code}; its output ends:\n{proc.stdout[-4000:]}")
    return None


def scratch_root(folder, shared_data):
    """A folder laid out like the repository root, and the environment its commands run in."""
    folder = pathlib.Path(folder)
    (folder / "shared").mkdir()
    (folder / "shared" / "data").symlink_to(shared_data)
    root = folder / "repo"
    root.mkdir()
    for name in LINKED:
        (root / name).symlink_to(REPO / name)
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for name in ("python", "python3"):  # a wrapper, not a link: a venv's python must stay one
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
        path.chmod(0o755)
    path_list = [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join(path_list), TF_CPP_MIN_LOG_LEVEL="2")
    return root, env


def make_given(root, page, vocab_file):
    for rel, what in GIVEN.get(page, {}).items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if what in MODEL_KINDS:
            save_tiny_classifier(target, what, vocab_file, max_seq_length=64)
        else:
            target.write_text(what, encoding="utf-8")


def repository_files():
    """The paths a page's commands could reach in the repository through the scratch root:
    its top-level entries and everything under the folders the root links to."""
    out = set(os.listdir(REPO))
    for linked in LINKED:
        for top, dirs, files in os.walk(REPO / linked):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            rel = os.path.relpath(top, REPO)
            out.update(os.path.join(rel, n) for n in dirs + files if not n.endswith(".pyc"))
    return out


# ---- the harness itself -------------------------------------------------------------------

SAMPLE = """\
# A page

```bash
echo one
```

  ~~~python
  x = 1
  ~~~

```
plain
```

````text
```python
not a block of its own
```
````
"""


def test_fenced_blocks_finds_each_block_with_its_language_and_line():
    blocks = fenced_blocks(SAMPLE)
    assert [(b.line, b.lang) for b in blocks] == [(4, "bash"), (8, "python"), (12, ""),
                                                  (16, "text")]
    assert blocks[1].body == "x = 1\n"
    assert blocks[3].body.startswith("```python\n")


@pytest.mark.parametrize("body, expected", [
    ("echo hi\n", Plan(True)),
    ("# not run by the tests: needs a GPU\necho hi\n", Plan(False, reason="needs a GPU")),
    ("\n#  exits 2: a bad flag\nfalse\n", Plan(True, 2, "a bad flag")),
])
def test_plan_reads_the_first_line(body, expected):
    assert plan(Block("p.md", 1, "bash", body)) == expected


@pytest.mark.parametrize("lang, body", [
    ("bash", "# not run by the tests\necho hi\n"),
    ("python", "# not run by the tests:   \nx = 1\n"),
    ("bash", "# exits 2\nfalse\n"),
    ("python", "# exits 1: raises\nraise SystemExit(1)\n"),
])
def test_a_marker_without_a_reason_or_out_of_place_is_refused(lang, body):
    with pytest.raises(MarkerError):
        plan(Block("p.md", 1, lang, body))


def test_a_failing_block_fails_the_page(tmp_path, shared_data):
    root, env = scratch_root(tmp_path, shared_data)
    ok = [Block("p.md", 3, "bash", "echo data > out.txt\n"),
          Block("p.md", 7, "python", "text = open('out.txt').read()\nsize = len(text)\n"),
          Block("p.md", 9, "python", "assert size == 5, size\n"),
          Block("p.md", 11, "sh", "# exits 3: shows the exit code check\nexit 3\n"),
          Block("p.md", 13, "bash", "# not run by the tests: would fail\nfalse\n"),
          Block("p.md", 15, "bash", "python3 -c 'import virt_tf' && test -d ../shared/data\n")]
    assert run_blocks(ok, root, env) is None
    for bad in (Block("p.md", 20, "python", "y = size + undefined_name\n"),
                Block("p.md", 20, "bash", "false\necho after\n"),
                Block("p.md", 20, "bash", "false | true\n"),
                Block("p.md", 20, "bash", "# exits 2: wrong code\nexit 1\n")):
        message = run_blocks(ok + [bad], root, env)
        assert message is not None and message.startswith("p.md:20:"), (bad, message)


# ---- the pages ----------------------------------------------------------------------------

def test_every_fence_is_code_or_named_output():
    """Code cannot hide in an unlabelled block; each code block's marker is well formed."""
    problems = []
    for page in PAGES:
        for block in page_blocks(page):
            if block.lang in PYTHON | SHELL:
                try:
                    plan(block)
                except MarkerError as e:
                    problems.append(str(e))
            elif block.lang == "console":
                problems.append(f"{block.where}: a console block mixes commands and output: "
                                f"put the commands in a bash block and the output in a text one")
            elif block.lang not in NOT_CODE:
                problems.append(f"{block.where}: fence language {block.lang!r} is neither code "
                                f"({sorted(PYTHON | SHELL)}) nor output ({sorted(NOT_CODE)})")
    assert not problems, "\n".join(problems)


def test_given_names_pages_and_files_that_exist():
    assert set(GIVEN) <= set(PAGES)
    for page, given in GIVEN.items():
        text = (REPO / page).read_text(encoding="utf-8")
        for rel in given:
            assert rel in text, f"{page} never mentions {rel}: drop it from GIVEN"


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)])
def test_page_blocks_run(page, tmp_path, shared_data, vocab_file):
    root, env = scratch_root(tmp_path, shared_data)
    before = repository_files()
    make_given(root, page, vocab_file)
    try:
        failure = run_blocks(code_blocks(page), root, env)
    finally:
        if "keras" in sys.modules:  # the page's Python ran in this process: leave no model state
            sys.modules["keras"].backend.clear_session()
    assert failure is None, (f"{failure}\n(a block that cannot run in the tests starts with "
                              "'# not run by the tests: <reason>'; see tests/test_docs.py)")
    added, removed = repository_files() - before, before - repository_files()
    assert not added and not removed, f"{page} changed the repository: +{added} -{removed}"
