"""The report's markdown and HTML escape values: a label is shown as written, never read as markup."""

from __future__ import annotations

from segkit.compare import document as doc

VALUE = "<b>a|b & `c`</b>"


def test_markdown_escapes_markup_in_table_cells_and_in_text() -> None:
    blocks = [doc.Heading(f"against {doc.literal(VALUE)}"),
              doc.Bullets([f"Fixed overrides: {doc.code('x=<1>&2')}, {doc.code('y=`z`')}"]),
              doc.Table(["variant", "n"], [[VALUE, "1"]])]
    markdown = doc.to_markdown(blocks)
    assert "## against &lt;b&gt;a|b &amp; \\`c\\`&lt;/b&gt;\n" in markdown
    assert "- Fixed overrides: `x=<1>&2`, y=\\`z\\`\n" in markdown  # inside a code span markdown shows text as is
    assert "| &lt;b&gt;a\\|b &amp; \\`c\\`&lt;/b&gt; | 1 |" in markdown


def test_html_shows_the_same_values_literally() -> None:
    blocks = [doc.Heading(f"against {doc.literal(VALUE)}"), doc.Paragraph(f"ok {doc.code('x=<1>')}"),
              doc.Table(["variant"], [[VALUE]])]
    page = doc.to_html(blocks, "t")
    escaped = "&lt;b&gt;a|b &amp; `c`&lt;/b&gt;"
    assert f"<h2>against {escaped}</h2>" in page and f"<td>{escaped}</td>" in page
    assert "<p>ok <code>x=&lt;1&gt;</code></p>" in page
