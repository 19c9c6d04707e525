"""Carbon labels as a body prints them: the signed text (:mod:`contracts.labels`), a QR code of
it (PNG or SVG, by ``segno``), and a small label image (SVG) with the figure, unit, product and
the QR code.

The QR code holds the label's text exactly (``PCFX1.…``, byte mode, error correction M), so a
scanner app hands it to ``pcfx label verify`` or the API's ``GET /labels/verify?payload=…``
unchanged. Nothing here decides anything: the label's content comes from the certificate
(:func:`contracts.labels.label_for`) and is signed by the body's key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final
from xml.sax.saxutils import escape

import segno

from pcf_exchange.contracts.errors import ContractError
from pcf_exchange.contracts.labels import Label

__all__ = ["label_svg", "qr_code", "write_qr"]

_ERROR: Final = "m"
"""Error correction M (15 %): a label survives some scuffing and stays small."""


def qr_code(text: str) -> segno.QRCode:
    """The QR code of a label's *text* (byte mode, error correction M, no boosting: the same
    symbol for the same label)."""
    return segno.make_qr(text, error=_ERROR, boost_error=False)


def write_qr(text: str, path: Path, *, scale: int = 4) -> Path:
    """Write the QR code of *text* to *path*: PNG or SVG by its suffix."""
    kind = path.suffix.lower().lstrip(".")
    if kind not in {"png", "svg"}:
        raise ContractError(
            f"'{path}': a QR code is written as .png or .svg (got {path.suffix or 'no suffix'!r})",
            hint="Name the file label.png or label.svg.",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    qr_code(text).save(str(path), kind=kind, scale=scale, border=4)
    return path


def label_svg(label: Label, text: str, *, product_name: str = "", body_name: str = "") -> str:
    """A small label image (SVG, 360x180 user units): figure and unit in large type, the product,
    the certifying body and certificate, the validity, and the QR code of *text* on the right."""
    qr = qr_code(text)
    size = qr.symbol_size(scale=1, border=2)[0]
    scale = max(1, 160 // size)
    qr_svg = qr.svg_inline(scale=scale, border=2, omitsize=False)
    qr_px = size * scale
    lines = [
        ("14", "bold", "Product carbon footprint"),
        ("30", "bold", f"{format(label.figure, 'f')}"),
        ("14", "normal", label.unit),
        ("10", "normal", product_name or label.product_id),
        ("9", "normal", f"Certified by {body_name or label.body_id}"),
        ("9", "normal", f"Certificate {label.certificate_id}"),
        ("9", "normal", f"Valid until {label.valid_until.date().isoformat()}"),
    ]
    y = 24
    texts = []
    for font_size, weight, content in lines:
        texts.append(
            f'<text x="12" y="{y}" font-family="sans-serif" font-size="{font_size}"'
            f' font-weight="{weight}">{escape(content[:48])}</text>'
        )
        y += int(font_size) + 8
    width = 12 + 190 + qr_px + 12
    height = max(180, qr_px + 20)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}">'
        f'<rect x="1" y="1" width="{width - 2}" height="{height - 2}" fill="white"'
        ' stroke="#2e7d32" stroke-width="2" rx="8"/>'
        + "".join(texts)
        + f'<g transform="translate({width - qr_px - 10},{(height - qr_px) // 2})">{qr_svg}</g>'
        + "</svg>\n"
    )
