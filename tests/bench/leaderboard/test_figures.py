"""Leaderboard figures from synthetic rows: every figure is written as PNG and PDF where the rows hold its data,
skipped with a reason (never an error) where they do not; one colour per strategy across figures; whiskers and
error lines inside the axes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from tempbench.figures import strategy_color
from tempbench.leaderboard import build_leaderboard, check_rows, classes, curves, deltas, summarize_rows
from tempbench.leaderboard.plotdata import Board, Skip

METRICS = ["knn200_top1", "linear_top1"]
COUNTS = [500, 120, 30, 6]
STEMS = ["accuracy", "groups_toy-lt", "tau_toy-lt", "class_accuracy_toy-lt", "tau_classes_toy-lt",
         "tau_quantiles_toy-lt", "tau_epochs_toy-lt", "training_toy-lt", "fixed_tau_toy-lt", "forest_toy-lt"]


def _history(rng, epochs, tau, per_sample, monitor):
    out = []
    for e in range(epochs):
        t = tau * (1 + 0.1 * e)
        by_class = [t * (1 + 0.2 * c) for c in range(len(COUNTS))] if per_sample else [t] * len(COUNTS)
        by_class[-1] = None if e == 0 else by_class[-1]  # an epoch where a class has no τ yet
        spread = 0.3 * t if per_sample else 0.0
        out.append({"loss": 5.0 - 0.3 * e + rng.normal(0, 0.05), "lr": 0.1, "tau_mean": t, "tau_min": t - spread,
                    "tau_max": t + 2 * spread, "tau_q10": t - 0.8 * spread, "tau_q25": t - 0.5 * spread,
                    "tau_q50": t, "tau_q75": t + 0.5 * spread, "tau_q90": t + spread, "tau_by_class": by_class,
                    **({"knn_monitor": 60.0 + 3 * e} if monitor else {})})
    return out


def toy_row(strategy, seed, hp, *, dataset="toy-lt", epochs=5, linear=80.0, per_sample=False, monitor=True):
    """A result row as tempbench.train writes it (the JSON columns included)."""
    rng = np.random.default_rng([seed, len(strategy)])
    config = {"strategy": strategy, "hyperparameters": hp, "dataset": dataset, "epochs": epochs}
    acc = linear + rng.normal(0, 1.0)
    tau = hp.get("tau", hp.get("tau_init", 0.2))
    return {"strategy": strategy, "dataset": dataset, "seed": seed, "lt_hash": "abc",
            "config": json.dumps(config), "hyperparameters": json.dumps(hp),
            "config_hash": f"{dataset}-{strategy}-{json.dumps(hp, sort_keys=True)}",
            "knn200_top1": acc - 5.0, "linear_top1": acc,
            **{f"{p}_{g}": acc * f for p in ("knn200", "linear") for g, f in
               (("many", 1.0), ("medium", 0.8), ("few", 0.4), ("head", 1.0), ("mid", 0.8), ("tail", 0.5))},
            "class_counts": json.dumps(COUNTS),
            "per_class_knn200": json.dumps([acc, 0.8 * acc, 3.0, None]),  # a class with no test image: null
            "per_class_linear": json.dumps([99.0, acc, 40.0, 1.0]),
            "tau_by_class": json.dumps([tau + 0.05 * c for c in range(len(COUNTS))]) if per_sample else "",
            "tau_spearman": -0.8 + 0.1 * seed if per_sample else float("nan"),
            "history": json.dumps(_history(rng, epochs, tau, per_sample, monitor))}


def toy_rows():
    rows = []
    for seed in range(3):
        rows += [toy_row("fixed", seed, {"tau": 0.1}, linear=78.0), toy_row("fixed", seed, {"tau": 0.3}),
                 toy_row("isogclr", seed, {"tau_init": 0.1}, linear=84.0 + seed, per_sample=True),
                 toy_row("my_strategy", seed, {}, linear=6.5)]  # whiskers would cross 0 %
    return pd.DataFrame(rows)


def _capture(patch, figures):
    """Record every figure saved (with its format) before it is written."""
    original = Figure.savefig

    def capture(self, *args, **kwargs):
        figures.append((self, kwargs.get("format")))
        return original(self, *args, **kwargs)

    patch.setattr(Figure, "savefig", capture)


@pytest.fixture(scope="module")
def toy_board(tmp_path_factory):
    """One leaderboard of toy_rows() for the tests that only read it: (folder, [(figure, format)])."""
    out, figures = tmp_path_factory.mktemp("board"), []
    with pytest.MonkeyPatch.context() as patch:
        _capture(patch, figures)
        build_leaderboard(toy_rows(), out, metrics=METRICS)
    return out, [fig for fig, fmt in figures if fmt == "png"]


def test_every_figure_is_written_as_png_and_pdf(toy_board):
    from PIL import Image

    folder, _ = toy_board
    names = {p.name for p in folder.iterdir()}
    assert names == {"leaderboard.md", "leaderboard.csv", "figures.md",
                     *(f"{s}.{ext}" for s in STEMS for ext in ("png", "pdf"))}
    for stem in STEMS:
        assert (folder / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
        with Image.open(folder / f"{stem}.png") as image:
            assert image.format == "PNG" and min(image.info["dpi"]) >= 199
    index = (folder / "figures.md").read_text()
    assert "skipped" not in index and "`forest_toy-lt.png` / `forest_toy-lt.pdf`" in index


def test_figures_without_their_data_are_skipped_with_a_reason(tmp_path):
    keep = ["strategy", "dataset", "seed", "config", "config_hash", *METRICS]
    rows = pd.DataFrame([toy_row(s, seed, hp, dataset="bare")
                         for seed in range(2) for s, hp in (("fixed", {"tau": 0.2}), ("cosine", {}))])[keep]
    board = build_leaderboard(rows, tmp_path, metrics=METRICS)  # filterwarnings=error: no warning either
    assert sorted(p.name for p in board.files) == ["accuracy.pdf", "accuracy.png", "figures.md", "forest_bare.pdf",
                                                   "forest_bare.png", "leaderboard.csv", "leaderboard.md"]
    index = (tmp_path / "figures.md").read_text()
    for stem in ("groups", "tau", "class_accuracy", "tau_classes", "tau_quantiles", "tau_epochs", "training",
                 "fixed_tau"):
        assert f"- skipped `{stem}_bare`: " in index
    assert "no `fixed` configurations that differ only in τ" in index


def test_one_seed_and_global_tau_only_draw_without_bands_or_skip(tmp_path):
    rows = check_rows(pd.DataFrame([toy_row("fixed", 0, {"tau": 0.2}, monitor=False),
                                    toy_row("learnable", 0, {})]), METRICS)
    board = Board.of(rows, summarize_rows(rows, METRICS), METRICS)
    for skipped in (classes.save_tau_vs_frequency, curves.save_tau_quantiles, deltas.save_forest):
        with pytest.raises(Skip):
            skipped(board, "toy-lt", board.rows, tmp_path / "x.png")
    paths = curves.save_tau_epochs(board, "toy-lt", board.rows, tmp_path / "tau_epochs.png")
    assert [p.name for p in paths] == ["tau_epochs.png", "tau_epochs.pdf"]


def _legend_colours(fig):
    out = {}
    for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]:
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
            colour = handle.get_facecolor() if hasattr(handle, "get_height") else handle.get_color()
            out[text.get_text()] = to_hex(colour)
    return out


def test_a_strategy_has_one_colour_in_every_figure(toy_board):
    seen = {}
    for fig in toy_board[1]:
        for text, colour in _legend_colours(fig).items():
            strategy = next((s for s in ("isogclr", "fixed", "my_strategy") if text.startswith(s)), None)
            if strategy:
                seen.setdefault(strategy, set()).add(colour)
    assert seen["isogclr"] == {strategy_color("isogclr")} == {"#d62728"}
    assert seen["fixed"] == {strategy_color("fixed")}  # two variants, one colour (markers differ)
    assert seen["my_strategy"] == {strategy_color("my_strategy")}


def test_a_strategy_keeps_its_style_in_another_leaderboard():
    rows = check_rows(toy_rows(), METRICS)
    full = Board.of(rows, summarize_rows(rows, METRICS), METRICS)
    part = rows[rows["strategy"] != "fixed"]
    other = Board.of(part, summarize_rows(part, METRICS), METRICS)
    assert other.styles == {k: v for k, v in full.styles.items() if not k.startswith("fixed")}


def test_error_lines_stay_inside_the_axes(toy_board):
    checked = 0
    for fig in toy_board[1]:
        for ax in fig.axes:
            (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
            for coll in ax.collections:
                if isinstance(coll, LineCollection) and coll.get_segments():
                    seg = np.concatenate(coll.get_segments())
                    assert seg[:, 1].min() >= y0 - 1e-9 and seg[:, 1].max() <= y1 + 1e-9, ax.get_ylabel()
                    assert seg[:, 0].min() >= x0 - 1e-9 and seg[:, 0].max() <= x1 + 1e-9, ax.get_xlabel()
                    checked += 1
            if ax.get_ylabel().endswith("(%)") and ax.get_yscale() == "linear":
                assert y0 >= 0.0
    assert checked > 20


def test_axis_labels_come_from_the_metric_registry(toy_board):
    saved = toy_board[1]
    labels = {lb for fig in saved for ax in fig.axes for lb in (ax.get_xlabel(), ax.get_ylabel())}
    assert "kNN-200 top-1 (%)" in labels and "linear top-1 (%)" in labels
    assert not any("knn200" in lb or "linear_top1" in lb for lb in labels)
    titles = " ".join([*(fig._suptitle.get_text() for fig in saved if fig._suptitle),
                       *(ax.get_title() for fig in saved for ax in fig.axes)])
    assert "toy-lt-fixed" not in titles  # configuration hashes never show


def test_a_failing_figure_is_a_warning_and_the_others_are_drawn(tmp_path, monkeypatch):
    from tempbench.leaderboard import FigureWarning
    from tempbench.leaderboard import figures as board_figures

    def broken(*_):
        raise RuntimeError("boom")

    monkeypatch.setattr(board_figures, "PER_DATASET", (*board_figures.PER_DATASET[:1], ("forest", "Δ", broken)))
    rows = pd.DataFrame([toy_row(s, seed, hp) for seed in range(2) for s, hp in (("fixed", {"tau": 0.2}),
                                                                              ("cosine", {}))])
    with pytest.warns(FigureWarning, match="forest_toy-lt failed: RuntimeError: boom"):
        board = build_leaderboard(rows, tmp_path, metrics=METRICS)
    assert "accuracy.png" in {p.name for p in board.files} and (tmp_path / "leaderboard.md").is_file()
    assert "- failed `forest_toy-lt`: RuntimeError: boom" in (tmp_path / "figures.md").read_text()
