"""Writing a declaration out: exact JSON, and a printable, self-contained HTML document.

JSON: :func:`dump_json` writes :class:`~decimal.Decimal` values as JSON number literals with
their exact digits (the battery passport's schema types figures as ``number``); the declarations'
own JSON carries decimals as strings (PACT's convention), which it writes unchanged.

HTML: one page, no scripts, no external resources (fonts, styles and images are inline or
absent), with print CSS (A4, no page break inside a section), so it prints or saves to PDF from
any browser. Every value is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any, Final

from pcf_exchange.contracts._jsonio import dumps

__all__ = ["dump_json", "render_html"]

_CSS: Final = """
body{font-family:"Noto Sans","Helvetica Neue",Arial,sans-serif;margin:2em auto;max-width:52em;
color:#111;line-height:1.4}
h1{font-size:1.4em;border-bottom:2px solid #222;padding-bottom:.3em}
h2{font-size:1.05em;margin:1.4em 0 .4em;color:#234}
table{border-collapse:collapse;width:100%}
th,td{border:1px solid #bbb;padding:.3em .5em;text-align:left;vertical-align:top}
th{width:34%;background:#f3f5f7;font-weight:600}
td{word-break:break-word}
.meta{color:#555;font-size:.9em}
section{break-inside:avoid;page-break-inside:avoid}
@page{size:A4;margin:18mm}
@media print{body{margin:0;max-width:none}a{color:inherit;text-decoration:none}}
"""


def dump_json(value: Any) -> str:
    """Indentation-free exact JSON (decimals as number literals), newline-terminated."""
    return dumps(value) + "\n"


def render_html(
    title: str,
    sections: Sequence[tuple[str, Sequence[tuple[str, str]]]],
    *,
    meta: Sequence[str] = (),
) -> str:
    """A printable HTML page: *title*, a line of *meta*, then one table per section."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    if meta:
        parts.append(f'<p class="meta">{" · ".join(e(m) for m in meta)}</p>')
    for heading, rows in sections:
        parts.append(f"<section><h2>{e(heading)}</h2><table>")
        if not rows:
            parts.append('<tr><td colspan="2">none</td></tr>')
        for label, value in rows:
            parts.append(f"<tr><th>{e(label)}</th><td>{e(value)}</td></tr>")
        parts.append("</table></section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
