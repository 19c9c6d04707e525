"""The timeline chart as server-side SVG: stacked bars, no script, no external resource.

Drawn on the server so the page needs no JavaScript (the console's Content-Security-Policy
allows none) and the offline report can embed the same chart. It is inline SVG in HTML5 with no
``xmlns`` (the HTML parser places it in the SVG namespace, and the report holds no URL at all).
Each series is one ``<g class="series" data-series="NAME">`` holding one ``<rect class="bar">``
per non-empty day, with a ``<title>`` giving the exact count, so a test (or a screen reader) can
count what is drawn.
"""

from __future__ import annotations

import html

from pcf_exchange.gateway.console._views import Chart

__all__ = ["PALETTE", "render_chart"]

PALETTE: dict[str, str] = {
    "sent": "#1a7f37",
    "released": "#2da44e",
    "held": "#bf8700",
    "blocked": "#cf222e",
    "denied": "#a40e26",
    "expired": "#6e7781",
}
_OTHERS = ("#0969da", "#8250df", "#bc4c00", "#1b7c83", "#953800", "#4d2d00", "#57606a")


def _colour(name: str, position: int) -> str:
    return PALETTE.get(name, _OTHERS[position % len(_OTHERS)])


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def render_chart(chart: Chart, *, width: int = 640, height: int = 220) -> str:
    """*chart* as an inline ``<svg>`` element with a legend (empty charts say so)."""
    left, bottom, top, right = 36, 34, 12, 8
    plot_w, plot_h = width - left - right, height - top - bottom
    out = [
        f'<svg class="chart" role="img" aria-label="{_e(chart.title)}" width="{width}"'
        f' height="{height + 22}" viewBox="0 0 {width} {height + 22}"'
        ">",
        f"<title>{_e(chart.title)}</title>",
    ]
    peak = chart.peak
    if not chart.buckets or peak == 0:
        out.append(
            f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle" class="empty">'
            "no transfers in this period</text></svg>"
        )
        return "".join(out)
    # axis and gridlines: 0, half, peak
    for value in sorted({0, peak // 2, peak}):
        y = top + plot_h - plot_h * value / peak
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" class="tick">{value}</text>'
        )
    n = len(chart.buckets)
    slot = plot_w / n
    bar = max(1.0, slot * 0.7)
    base = [0] * n
    for position, series in enumerate(chart.series):
        colour = _colour(series.name, position)
        out.append(f'<g class="series" data-series="{_e(series.name)}" fill="{colour}">')
        for i, value in enumerate(series.values):
            if value == 0:
                continue
            y0 = top + plot_h - plot_h * (base[i] + value) / peak
            h = plot_h * value / peak
            x = left + i * slot + (slot - bar) / 2
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{y0:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                f"<title>{_e(chart.buckets[i])}: {value} {_e(series.name)}</title></rect>"
            )
            base[i] += value
        out.append("</g>")
    # x labels: first, last, and about six between
    step = max(1, n // 6)
    for i in sorted({*range(0, n, step), n - 1}):
        x = left + i * slot + slot / 2
        out.append(
            f'<text x="{x:.1f}" y="{height - bottom + 14}" text-anchor="middle" class="tick">'
            f"{_e(chart.buckets[i][5:])}</text>"
        )
    # legend
    x = left
    for position, series in enumerate(chart.series):
        label = f"{series.name} ({sum(series.values)})"
        out.append(
            f'<rect x="{x}" y="{height + 6}" width="10" height="10"'
            f' fill="{_colour(series.name, position)}"/>'
            f'<text x="{x + 14}" y="{height + 15}" class="legend">{_e(label)}</text>'
        )
        x += 24 + 7 * len(label)
    out.append("</svg>")
    return "".join(out)
