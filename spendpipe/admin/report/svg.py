"""Inline SVG charts for the HTML report, written by hand rather than with a plotting library.

The report is one offline file, so a chart must be markup inside it. matplotlib is only a dev
dependency here (it would add ~40 MB and a font cache to every deployment of the CLI) and its
SVG embeds glyph paths for every label; two chart kinds of a few dozen lines each do not need it.

Every text that comes from data (a team id, a model name) passes through `esc`: a chart never
carries data as markup, nor a character that reorders or hides text. Amounts are scaled as
floats for geometry only; the exact Decimal is what the tooltips (`<title>`) and labels say.
"""

import math
from collections.abc import Sequence
from decimal import Decimal
from html import escape

from spendpipe.platform.visible_text import visible

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 760, 260, 70, 40, 16


def esc(value: object) -> str:
    """Text for HTML and SVG: markup escaped, and controls, bidi overrides and characters that
    print as nothing shown as escapes, as the CLI shows them (`platform.visible_text`)."""
    return escape(visible(value), quote=True)


def money(value: Decimal) -> str:
    """Exact, without the trailing zeros Decimal(76, 24) carries: 0.300000000000000000000001."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def stacked_bars(label: str, buckets: Sequence[str], series: dict[str, list[Decimal]]) -> str:
    """One bar per bucket, one stacked segment per series (`<g class="series">` each, in order)."""
    totals = [sum((values[i] for values in series.values()), Decimal(0)) for i in range(len(buckets))]
    top = _nice_top(float(max(totals, default=Decimal(0))))
    plot_w, plot_h = WIDTH - LEFT - 10, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(buckets), 1)
    parts = [_frame(label, top)]
    base = [0.0] * len(buckets)
    for n, (name, values) in enumerate(series.items()):
        rects = []
        for i, value in enumerate(values):
            if not value:
                continue
            h = float(value) / top * plot_h
            base[i] += h
            x, y = LEFT + i * step + step * 0.1, TOP + plot_h - base[i]
            rects.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" height="{h:.1f}">'
                f"<title>{esc(name)} {esc(buckets[i])}: {esc(money(value))}</title></rect>"
            )
        color = PALETTE[n % len(PALETTE)]
        parts.append(f'<g class="series" data-series="{esc(name)}" fill="{color}">{"".join(rects)}</g>')
    parts.append(_x_labels(buckets, step))
    return _svg(label, parts) + _legend(list(series))


def burn_down(label: str, buckets: Sequence[str], spent: Sequence[Decimal], cap: Decimal) -> str:
    """Cumulative spend across the window (`polyline.spend`) against the cap (`line.cap`)."""
    running, points = Decimal(0), []
    for value in spent:
        running += value
        points.append(running)
    top = _nice_top(float(max([cap, *points])) * 1.05)
    plot_w, plot_h = WIDTH - LEFT - 10, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(buckets), 1)

    def y(value: Decimal) -> float:
        return TOP + plot_h - float(value) / top * plot_h

    coords = " ".join(f"{LEFT + (i + 1) * step:.1f},{y(v):.1f}" for i, v in enumerate(points))
    cap_y = y(cap)
    parts = [
        _frame(label, top),
        f'<line class="cap" x1="{LEFT}" x2="{WIDTH - 10}" y1="{cap_y:.1f}" y2="{cap_y:.1f}" '
        f'stroke="#e15759" stroke-dasharray="6 4"><title>cap {esc(money(cap))}</title></line>',
        f'<polyline class="spend" points="{LEFT},{y(Decimal(0)):.1f} {coords}" fill="none" stroke="#4e79a7" '
        f'stroke-width="2"><title>spent {esc(money(running))}</title></polyline>',
        _x_labels(buckets, step),
    ]
    return _svg(label, parts)


def _nice_top(value: float) -> float:
    """The axis's top, reaching `value`: four ticks of a round step (1, 1.5, 2, 2.5, 3, 4, 5,
    6, 7.5 or 8 times a power of ten)."""
    if value <= 0:
        return 1.0
    magnitude: float = 10.0 ** math.floor(math.log10(value / 4))
    step = next(m * magnitude for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5, 8, 10) if m * magnitude * 4 >= value)
    return step * 4


def _svg(label: str, parts: list[str]) -> str:
    return (
        f'<svg role="img" aria-label="{esc(label)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}">{"".join(parts)}</svg>'
    )


def _frame(label: str, top: float) -> str:
    plot_h = HEIGHT - BOTTOM - TOP
    ticks = []
    for k in range(5):
        value, y = top * k / 4, TOP + plot_h - plot_h * k / 4
        ticks.append(
            f'<line x1="{LEFT}" x2="{WIDTH - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>'
        )
    return f'<g class="axis" font-size="11" fill="#555"><title>{esc(label)}</title>{"".join(ticks)}</g>'


def _x_labels(buckets: Sequence[str], step: float) -> str:
    every = max(1, len(buckets) // 12)
    labels = [
        f'<text x="{LEFT + i * step + step / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{esc(name)}</text>'
        for i, name in enumerate(buckets)
        if i % every == 0
    ]
    return f'<g class="x" font-size="11" fill="#555">{"".join(labels)}</g>'


def _legend(names: list[str]) -> str:
    items = [
        f'<li><span class="swatch" style="background:{PALETTE[n % len(PALETTE)]}"></span>{esc(name)}</li>'
        for n, name in enumerate(names)
    ]
    return f'<ul class="legend">{"".join(items)}</ul>'
