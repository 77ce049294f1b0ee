"""The one home of the figures' look and of writing them, for every wing (leaderboard, τ analytics, sensitivity
reports, `tempbench data show --views`):

- style: one colour per strategy in every figure (`strategy_color`; variants of a strategy share it and differ by
  marker, line and hatch: `cell_styles`), whiskers clipped at the axis range, legends outside the data, a log
  class-count axis whose tick labels never overlap;
- saving: `save_figure` writes PNG (200 dpi) and PDF side by side, each atomically, and closes the figure; with
  `warn=True` a failed write is a `FigureWarning`, never a lost result.

matplotlib is imported inside the functions: the training path runs without it, `tempbench --help` stays instant,
and selecting the Agg backend must happen before pyplot is imported.

    styles = cell_styles({"fixed (tau=0.1)": "fixed", "fixed (tau=0.5)": "fixed", "isogclr": "isogclr"})
    with figure(2, cols=2) as (fig, axes):
        axes[0].plot(x, y, label=label, **styles[label].line())   # the two fixed variants: one grey, two markers
        legend_outside(fig, axes)
        paths = save_figure(fig, "out/accuracy.png")              # out/accuracy.png and out/accuracy.pdf
"""

from __future__ import annotations

import colorsys
import hashlib
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DPI = 200  # of every PNG; in a PDF (vector) it only sets the resolution of rasterised parts such as colour bars
FORMATS = ("png", "pdf")  # PNG for Markdown and the MLflow UI, PDF (vector) for papers
# the built-in strategies in a stable order, each with its colour (tab10 hues; the baseline in dark grey). Names not
# listed get a colour from a hash of the name, so a third-party strategy too keeps its colour across leaderboards.
BUILTIN_COLORS = (("fixed", "#404040"), ("cosine", "#1f77b4"), ("step", "#17becf"), ("linear", "#9467bd"),
                  ("learnable", "#2ca02c"), ("sogclr", "#ff7f0e"), ("isogclr", "#d62728"),
                  ("tau_uncertainty", "#8c564b"), ("macl", "#e377c2"), ("rgclg", "#bcbd22"))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
LINESTYLES = ("-", "--", "-.", ":")
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo")


def strategy_color(name: str) -> str:
    """The colour of a strategy: fixed for the built-ins, else from a SHA-256 of the name (never Python's salted
    hash), so it is the same in every figure, leaderboard and process."""
    builtin = dict(BUILTIN_COLORS)
    if name in builtin:
        return builtin[name]
    digest = hashlib.sha256(str(name).encode("utf-8")).digest()
    hue = int.from_bytes(digest[:4], "big") / 2**32
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.55 + 0.35 * digest[4] / 255, 0.5 + 0.3 * digest[5] / 255)
    return "#" + "".join(f"{round(255 * c):02x}" for c in (red, green, blue))


def strategy_rank(name: str) -> tuple[int, str]:
    """Sort key: the built-ins in their palette order, then every other name alphabetically."""
    order = [n for n, _ in BUILTIN_COLORS]
    return (order.index(name) if name in order else len(order), str(name))


@dataclass(frozen=True)
class Style:
    """How one configuration is drawn: its strategy's colour; the variant number picks marker, line and hatch."""

    color: str
    variant: int = 0

    @property
    def marker(self) -> str:
        """The variant's marker (cycling past the last)."""
        return MARKERS[self.variant % len(MARKERS)]

    @property
    def linestyle(self) -> str:
        """The variant's line style (cycling past the last)."""
        return LINESTYLES[self.variant % len(LINESTYLES)]

    @property
    def hatch(self) -> str:
        """The variant's bar hatch (cycling past the last): variants stay apart in grayscale print too."""
        return HATCHES[self.variant % len(HATCHES)]

    def line(self) -> dict[str, Any]:
        """Keyword arguments for `ax.plot` / `ax.errorbar`."""
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle}

    def bar(self) -> dict[str, Any]:
        """Keyword arguments for `ax.bar`; white edges keep neighbouring bars of one colour apart."""
        return {"color": self.color, "hatch": self.hatch, "edgecolor": "white", "linewidth": 0.5}


def cell_styles(cells: Mapping[str, str]) -> dict[str, Style]:
    """label -> Style from label -> strategy: a strategy's variants (its labels, sorted) share its colour and get
    the 0th, 1st, ... marker / line style / hatch."""
    out = {}
    for strategy in {str(s) for s in cells.values()}:
        for k, label in enumerate(sorted(lb for lb, s in cells.items() if str(s) == strategy)):
            out[label] = Style(strategy_color(strategy), k)
    return out


def ordered_labels(cells: Mapping[str, str]) -> list[str]:
    """The labels in strategy order (built-ins first, in palette order), variants of one strategy sorted."""
    return sorted(cells, key=lambda label: (strategy_rank(str(cells[label])), label))


def whiskers(center: Any, low: Any, high: Any, bounds: tuple[float | None, float | None] = (None, None)) -> np.ndarray:
    """(2, n) error-bar lengths [center − low, high − center] with low and high clipped at `bounds` (e.g. (0, 100)
    for a percentage: no whisker below 0 %); 0 where anything is NaN."""
    center = np.asarray(center, dtype=np.float64).reshape(-1)
    low = np.broadcast_to(np.asarray(low, dtype=np.float64), center.shape)
    high = np.broadcast_to(np.asarray(high, dtype=np.float64), center.shape)
    lo_bound = -np.inf if bounds[0] is None else bounds[0]
    hi_bound = np.inf if bounds[1] is None else bounds[1]
    err = np.vstack([center - np.clip(low, lo_bound, hi_bound), np.clip(high, lo_bound, hi_bound) - center])
    return np.nan_to_num(err, nan=0.0).clip(min=0.0)


def new_figure(panels: int = 1, width: float = 4.2, height: float = 3.2, cols: int | None = None) -> tuple[Any, Any]:
    """(figure, flat list of `panels` axes) in constrained layout: panels of width × height inches, `cols` per row
    (default: all in one row); the cells of the last row that no panel fills are hidden. The figure is 1.8 inches
    wider than its panels: room for `legend_outside`. Close it (or draw inside `figure`, which does)."""
    plt = pyplot_agg()
    cols = min(panels, cols or panels)
    rows = -(-panels // cols)  # ceiling division
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 1.8, height * rows), squeeze=False,
                             layout="constrained")
    flat = list(axes.reshape(-1))
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


@contextmanager
def figure(panels: int = 1, width: float = 4.2, height: float = 3.2,
           cols: int | None = None) -> Iterator[tuple[Any, list[Any]]]:
    """`new_figure` as a context: yields (figure, axes) and closes the figure on the way out, drawn or failed."""
    fig, axes = new_figure(panels, width, height, cols)
    with closing_figure(fig):
        yield fig, axes


@contextmanager
def closing_figure(fig: Any) -> Iterator[Any]:
    """Yield `fig` and close it on the way out, whatever happened: pyplot keeps every figure it made alive until it
    is closed, so a sweep drawing hundreds would otherwise grow without bound."""
    try:
        yield fig
    finally:
        close_figure(fig)


def offscreen_figure(width: float, height: float) -> Any:
    """A constrained-layout `matplotlib.figure.Figure` of width × height inches on its own Agg canvas, outside pyplot:
    for figures drawn by library code that may run inside a user's interactive session, whose backend it must not
    switch. Nothing to close; `save_figure` writes it like any other."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return fig


def close_figure(fig: Any) -> None:
    """Release `fig` from pyplot's registry. A figure made without pyplot (`matplotlib.figure.Figure` on an Agg
    canvas) is not in it, and pyplot is then not imported just to close it (importing it picks a backend)."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)


def legend_outside(fig: Any, axes: Iterable[Any], title: str | None = None,
                   handles: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
    """One legend for the figure (the handles of `axes`, none repeated, or `handles`: label -> artist), right of the
    top-right panel, starting at its top: never over the data nor the figure's title (constrained layout makes
    room for it)."""
    axes = list(axes)
    handles = dict(handles or {})
    for ax in axes if not handles else []:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if not label.startswith("_"):
                handles.setdefault(label, handle)
    if not handles:
        return
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_subplotspec() is not None] or axes
    top = min(ax.get_subplotspec().rowspan.start for ax in visible)
    anchor = max((ax for ax in visible if ax.get_subplotspec().rowspan.start == top),
                 key=lambda ax: ax.get_subplotspec().colspan.stop)
    anchor.legend(list(handles.values()), list(handles), loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  borderaxespad=0.0, fontsize="small", frameon=False, title=title, title_fontsize="small", **kwargs)


def log_count_axis(ax: Any, counts: Any, label: str = "training images per class") -> None:
    """A log x-axis over `counts` with a little room either side and tick labels that cannot overlap
    (`count_ticks`)."""
    x = np.asarray(counts, dtype=np.float64)
    x = x[np.isfinite(x) & (x > 0)]
    lo, hi = (float(x.min()), float(x.max())) if x.size else (1.0, 10.0)
    pad = max((hi / lo) ** 0.06, 1.02) if hi > lo else 1.1  # 6 % of the decades spanned either side, at least 2 %
    ax.set_xscale("log")
    ax.set_xlim(lo / pad, hi * pad)
    count_ticks(ax.xaxis, lo / pad, hi * pad)
    ax.set_xlabel(label)


def count_ticks(axis: Any, lo: float, hi: float) -> None:
    """Ticks of a log axis over [lo, hi] as plain numbers: decades (plus 2, 3 and 5 over a narrow range), or a few
    round numbers when the range is under one decade; minor ticks unlabelled."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    decades = np.log10(hi / lo)
    if decades < 1.0:
        ticks = [t for t in MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= t <= hi]
        axis.set_major_locator(FixedLocator(ticks))
    else:
        subs = (1.0, 2.0, 3.0, 5.0) if decades <= 1.5 else (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)
        axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def dodge(values: Any, index: int, count: int, spread: float, log: bool = False) -> np.ndarray:
    """Shift `values` for the index-th of `count` series side by side (total width `spread`; on a log axis a
    factor of 10**spread), so series at the same x do not hide each other."""
    offset = (index - (count - 1) / 2) * spread / max(count, 1)
    values = np.asarray(values, dtype=np.float64)
    return values * 10.0**offset if log else values + offset


class FigureWarning(UserWarning):
    """A figure could not be drawn or written; the numbers, tables and other files it illustrates were kept."""


def save_figure(fig: Any, path: str | os.PathLike[str], *, formats: Sequence[str] = FORMATS, dpi: int = DPI,
                close: bool = True, warn: bool = False) -> list[Path]:
    """Write `fig` at `path` once per format (the suffix replaced: a.png -> a.png, a.pdf) and return the paths.

    Each file is written atomically (`tempbench.util.write_atomic`: a reader never sees half a PNG). The layout
    computed for the first format is frozen for the others, so the PDF is the PNG's figure, not a re-laid-out one.
    close: close the figure afterwards, also when a write fails. warn: a failed write is a `FigureWarning`
    ("could not write PATH: ...") and the files written so far are returned, instead of raising — for figures
    that illustrate a finished result and must never cost it.
    """
    from tempbench.util import write_atomic

    out: list[Path] = []
    try:
        for k, fmt in enumerate(formats):
            if k == 1:
                fig.set_layout_engine("none")  # the layout the first file got (in inches) is the others' too
            out.append(write_atomic(Path(path).with_suffix(f".{fmt}"),
                                    lambda fh, fmt=fmt: fig.savefig(fh, format=fmt, dpi=dpi), text=False))
    except Exception as exc:
        if not warn:
            raise
        warnings.warn(f"could not write {path}: {type(exc).__name__}: {exc}", FigureWarning, stacklevel=2)
    finally:
        if close:
            close_figure(fig)
    return out


def pyplot_agg() -> Any:
    """pyplot on the non-interactive Agg backend (headless machines, no GUI warnings in tests)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
