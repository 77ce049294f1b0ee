"""The shared figure style (tempbench.figures): a stable colour per strategy, variants sharing it, whiskers clipped at
the axis range, a log class-count axis whose tick labels do not overlap, PNG + PDF written atomically."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tempbench.figures import (
    BUILTIN_COLORS,
    FigureWarning,
    cell_styles,
    figure,
    log_count_axis,
    new_figure,
    ordered_labels,
    pyplot_agg,
    save_figure,
    strategy_color,
    whiskers,
)
from tempbench.leaderboard.curves import snapshot_epochs


def test_built_in_strategies_have_fixed_distinct_colours():
    colours = [strategy_color(name) for name, _ in BUILTIN_COLORS]
    assert len(set(colours)) == len(colours)
    assert strategy_color("isogclr") == "#d62728" and strategy_color("fixed") == "#404040"


def test_an_unknown_strategy_gets_the_same_hashed_colour_in_every_process():
    # a literal: Python's hash() is salted per process, the colour must not be
    assert strategy_color("my_strategy") == "#4aab44"
    assert strategy_color("my_strategy") == strategy_color("my_strategy") != strategy_color("my_strategy2")


def test_variants_share_their_strategy_colour_with_different_markers():
    styles = cell_styles({"fixed (tau=0.1)": "fixed", "fixed (tau=0.5)": "fixed", "isogclr": "isogclr"})
    a, b = styles["fixed (tau=0.1)"], styles["fixed (tau=0.5)"]
    assert a.color == b.color == strategy_color("fixed")
    assert (a.marker, a.linestyle, a.hatch) != (b.marker, b.linestyle, b.hatch)
    assert styles["isogclr"].color == strategy_color("isogclr")
    # the same labels give the same styles whatever the order they come in
    assert cell_styles(dict(reversed(list({"fixed (tau=0.1)": "fixed", "fixed (tau=0.5)": "fixed"}.items())))) == \
        {k: v for k, v in styles.items() if k.startswith("fixed")}
    assert ordered_labels({"zeta": "zeta", "isogclr": "isogclr", "fixed": "fixed"}) == ["fixed", "isogclr", "zeta"]


def test_whiskers_never_cross_the_axis_bounds():
    mean = np.array([1.0, 50.0, 99.5, np.nan])
    err = whiskers(mean, mean - 3.0, mean + 3.0, (0.0, 100.0))
    assert err.shape == (2, 4) and (err >= 0).all()
    assert (mean[:3] - err[0, :3]).min() == 0.0 and (mean[:3] + err[1, :3]).max() == 100.0
    assert err[:, 1].tolist() == [3.0, 3.0] and err[:, 3].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(whiskers([0.2], [0.1], [0.5]), [[0.1], [0.3]])  # no bounds: unclipped


def _overlapping_tick_labels(counts):
    fig, (ax,) = new_figure(1, width=4.2, height=3.0)
    try:
        ax.plot(counts, np.ones(len(counts)), "o")
        log_count_axis(ax, counts)
        fig.canvas.draw()
        boxes = sorted((t.get_window_extent() for t in ax.get_xticklabels() if t.get_visible() and t.get_text()),
                       key=lambda b: b.x0)
        visible = [b for b in boxes if ax.bbox.x0 - 1 <= (b.x0 + b.x1) / 2 <= ax.bbox.x1 + 1]
        return len(visible), any(a.x1 > b.x0 for a, b in itertools.pairwise(visible))
    finally:
        pyplot_agg().close(fig)


@pytest.mark.parametrize("counts", [[139, 142, 146], [5, 20, 60, 200], [6, 30, 120, 500, 5000, 50000]])
def test_log_count_axis_labels_do_not_overlap(counts):
    labels, overlap = _overlapping_tick_labels(counts)
    assert labels >= 2 and not overlap


def test_save_figure_writes_png_and_pdf_atomically(tmp_path):
    fig, (ax,) = new_figure(1)
    ax.plot([1, 2], [3, 4])
    try:
        paths = save_figure(fig, tmp_path / "f.png")
    finally:
        pyplot_agg().close(fig)
    assert [p.name for p in paths] == ["f.png", "f.pdf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png"]  # no temporary file left behind


def test_save_figure_writes_the_formats_asked_for_and_closes_the_figure(tmp_path):
    plt = pyplot_agg()
    fig, (ax,) = new_figure(1)
    ax.plot([1, 2], [3, 4])
    assert save_figure(fig, tmp_path / "views.png", formats=("png",), dpi=50) == [tmp_path / "views.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["views.png"] and fig.number not in plt.get_fignums()


def test_a_failed_write_can_be_a_warning_instead_of_an_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    fig, _ = new_figure(1)
    with pytest.warns(FigureWarning, match="could not write"):
        assert save_figure(fig, tmp_path / "file" / "f.png", warn=True) == []
    fig, _ = new_figure(1)
    with pytest.raises(OSError):
        save_figure(fig, tmp_path / "file" / "f.png")
    assert fig.number not in pyplot_agg().get_fignums()  # closed although the write failed


def test_a_figure_that_fails_while_drawing_is_closed_too():
    plt = pyplot_agg()
    before = set(plt.get_fignums())
    with pytest.raises(RuntimeError, match="boom"), figure(2) as (_, axes):
        axes[0].plot([1, 2], [3, 4])
        raise RuntimeError("boom")
    assert set(plt.get_fignums()) == before


def test_snapshot_epochs_spread_over_training():
    assert snapshot_epochs(100) == [1, 34, 67, 100]
    assert snapshot_epochs(3) == [1, 2, 3] and snapshot_epochs(1) == [1] and snapshot_epochs(0) == []


def test_near_balanced_classes_get_one_slot_each_instead_of_a_log_axis():
    from tempbench.leaderboard.classes import ClassAxis

    balanced = ClassAxis([np.array([146.0, 139.0, 142.0])])
    assert balanced.balanced and balanced.x(np.array([146.0, 139.0, 142.0]), 0, 1).tolist() == [2.0, 0.0, 1.0]
    long_tail = ClassAxis([np.array([500.0, 50.0, 5.0])])
    assert not long_tail.balanced and long_tail.x(np.array([500.0, 50.0, 5.0]), 0, 1).tolist() == [500.0, 50.0, 5.0]
