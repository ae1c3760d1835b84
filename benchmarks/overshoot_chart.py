"""The overshoot benchmark as a picture: cumulative admitted spend over time, one colour per
system (every run drawn, later runs fainter), and the cap they share."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a build machine

import matplotlib.pyplot as plt

Curve = Sequence[tuple[float, float]]
"""(seconds since the run started, cumulative admitted $) at each admitted call."""

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")
WIDTHS = (2.4, 1.4, 1.4, 1.4)
"""The first system is drawn thickest and on top: until the cap the lines coincide."""


def draw(curves: Mapping[str, Sequence[Curve]], *, cap: float, title: str, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(9, 5), dpi=110)
    try:
        for rank, (system, runs) in enumerate(curves.items()):
            for n, curve in enumerate(runs):
                times = [0.0, *(t for t, _ in curve)]
                spend = [0.0, *(s for _, s in curve)]
                axes.step(
                    times, spend, where="post", color=COLOURS[rank], linewidth=WIDTHS[rank],
                    alpha=max(0.35, 1.0 - 0.3 * n), zorder=10 - rank, label=system if n == 0 else None,
                )  # fmt: skip
        axes.axhline(cap, color="black", linestyle="--", linewidth=1, label=f"cap ${cap:.4g}")
        axes.set_xlabel("seconds since traffic started")
        axes.set_ylabel("cumulative admitted spend ($)")
        axes.set_title(title, fontsize=10)
        axes.set_ylim(bottom=0)
        axes.set_xlim(left=0)
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left", fontsize=8)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
    finally:
        plt.close(figure)
