"""Generated Markdown blocks (`virt_tf.reproduction.markdown_blocks`)."""
import pytest

from virt_tf.errors import ConfigError
from virt_tf.reproduction.markdown_blocks import markers, replace_block


def test_only_the_named_block_is_rewritten(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# t\n<!-- a:begin -->\nold a\n<!-- a:end -->\nmiddle\n"
                   "<!-- b:begin -->\nold b\n<!-- b:end -->\nend\n")
    replace_block(str(doc), "b", "\nnew b\n\n")
    assert doc.read_text() == ("# t\n<!-- a:begin -->\nold a\n<!-- a:end -->\nmiddle\n"
                               "<!-- b:begin -->\nnew b\n<!-- b:end -->\nend\n")
    replace_block(str(doc), "b", "again")   # idempotent markers: a second rewrite works
    assert "again" in doc.read_text() and "new b" not in doc.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.md"]  # no temporary left
    assert markers("results") == ("<!-- results:begin -->", "<!-- results:end -->")


@pytest.mark.parametrize("text", ["no markers\n", "<!-- b:begin -->\nonly the begin\n",
                                  "<!-- b:end -->\nend first\n<!-- b:begin -->\n"])
def test_a_file_without_the_block_is_refused_and_left_alone(tmp_path, text):
    doc = tmp_path / "doc.md"
    doc.write_text(text)
    with pytest.raises(ConfigError, match="no <!-- b:begin --> ... <!-- b:end --> block"):
        replace_block(str(doc), "b", "x")
    assert doc.read_text() == text
