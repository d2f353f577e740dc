"""Generated blocks of Markdown files: the text between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` is rewritten by a tool (the README's results, the recipe screen's
table in docs/recipes.md); the rest of the file is left as written by hand."""
from virt_tf.errors import ConfigError
from virt_tf.rundir import write_text_atomic


def markers(name):
    """``(begin, end)`` comment lines of the block ``name``."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def replace_block(path, name, body):
    """Replace block ``name`` of the Markdown file ``path`` with ``body`` (written
    atomically: a kill never leaves half a file). A file without both
    markers, or with the end before the begin, is refused (`ConfigError`)."""
    begin, end = markers(name)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if begin not in text or end not in text.split(begin, 1)[1]:
        raise ConfigError(f"{path} has no {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    write_text_atomic(path, head + begin + "\n" + body.strip() + "\n" + end + tail)
