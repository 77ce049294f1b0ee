"""τ analytics: per-class summaries, Spearman correlation with class frequency, the figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tempbench.eval import save_tau_figure, summarize_tau, tau_row_fields


def long_tail_tau(rising: bool):
    counts = np.array([400, 200, 100, 50, 25])
    labels = np.repeat(np.arange(5), counts)
    base = np.linspace(0.1, 0.5, 5)[labels] if rising else np.linspace(0.5, 0.1, 5)[labels]
    noise = np.random.default_rng(0).uniform(-0.01, 0.01, labels.size)
    return base + noise, labels, counts


@pytest.mark.parametrize(("rising", "expected"), [(True, -1.0), (False, 1.0)])
def test_perfectly_monotone_class_means_give_unit_spearman(rising, expected):
    tau, labels, counts = long_tail_tau(rising)
    summary = summarize_tau(torch.tensor(tau), torch.tensor(labels), counts)
    assert summary["spearman"] == pytest.approx(expected)


def test_table_holds_mean_and_quantiles_per_class():
    tau, labels, counts = long_tail_tau(True)
    table = summarize_tau(tau, labels, counts)["table"]
    assert table["count"].tolist() == counts.tolist()
    for c in range(5):
        values = tau[labels == c]
        assert table.loc[c, "mean"] == pytest.approx(values.mean())
        assert table.loc[c, "q25"] == pytest.approx(np.percentile(values, 25))
        assert table.loc[c, "q90"] == pytest.approx(np.percentile(values, 90))
        assert table.loc[c, "n_tau"] == counts[c]


def test_constant_tau_or_missing_classes_give_nan_without_warnings():
    labels = np.array([0, 0, 1, 2])
    assert np.isnan(summarize_tau(np.full(4, 0.1), labels, [2, 1, 1])["spearman"])  # a global-τ strategy
    summary = summarize_tau(np.array([0.1, 0.2]), np.array([0, 0]), [2, 5])  # class 1 has no τ
    assert np.isnan(summary["table"].loc[1, "mean"]) and np.isnan(summary["spearman"])
    fields = tau_row_fields(summary)
    assert json.loads(fields["tau_by_class"]) == [pytest.approx(0.15), None]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="tau has 3 entries but train_labels has 2"):
        summarize_tau([0.1, 0.2, 0.3], [0, 1], [1, 1])
    with pytest.raises(ValueError, match=r"train_labels must lie in \[0, 2\)"):
        summarize_tau([0.1, 0.2], [0, 2], [1, 1])


def test_figure_is_written(tmp_path):
    tau, labels, counts = long_tail_tau(True)
    path = save_tau_figure(summarize_tau(tau, labels, counts), tmp_path / "figs" / "tau.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"  # a PDF beside the PNG
    assert sorted(p.name for p in path.parent.iterdir()) == ["tau.pdf", "tau.png"]  # no temporary file left behind


def test_figure_is_written_when_tau_piles_up_at_a_bound(tmp_path):
    """τ at its lower bound for most samples of a class: the class mean lies outside [q25, q75] (the bug that once
    cost a finished run); the median with its IQR is always drawable."""
    labels = np.repeat(np.arange(3), 20)
    tau = np.full(60, 0.05)
    tau[:4] = 0.9  # class 0: mean 0.167, but q25 = q50 = q75 = 0.05
    summary = summarize_tau(tau, labels, [20, 20, 20])
    assert summary["table"]["mean"][0] > summary["table"]["q75"][0]
    path = save_tau_figure(summary, tmp_path / "tau.png", title="piled up")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_figure_takes_the_strategy_colour_and_names_spearman(tmp_path, monkeypatch):
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure

    from tempbench.figures import strategy_color

    saved = []
    original = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (saved.append(self), original(self, *a, **k))[1])
    tau, labels, counts = long_tail_tau(True)
    save_tau_figure(summarize_tau(tau, labels, counts), tmp_path / "tau.png", title="isogclr on toy, seed 0")
    fig = saved[0]
    (ax,) = fig.axes
    assert to_hex(ax.lines[0].get_color()) == strategy_color("isogclr")
    assert "Spearman ρ (class-mean τ vs class size) = -1.00" in fig._suptitle.get_text()
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "per-sample τ"
    fig.canvas.draw()
    assert ax.get_legend().get_window_extent().x0 > ax.get_window_extent().x1  # the legend sits outside the data
