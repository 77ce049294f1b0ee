"""What whitening buys the linear probe: `linear_probe` with L-BFGS in whitened coordinates (the default) against
L-BFGS in (W, b) themselves, on real features, one thread, one after the other in one process.

    python results/perf/probe-solver/compare.py --out results/perf/probe-solver

Features: the small CNN after 3 epochs of `fixed` on CIFAR-10-LT (the cifar10-lt-long settings, seed 0), for the
three probes a cifar10-lt-long run evaluates (linear on the long-tailed split, few-shot, full-shot on the balanced
50,000), and raw scikit-learn digits pixels (separable: the case the whitening floor is for). Prints and writes
compare.md: seconds, iterations of the final refit, chosen λ, test top-1, test predictions that differ and the
relative objective difference of the final fits (negative: whitened reached a lower objective).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from tempbench.config import load_suite
from tempbench.eval.evaluate import balanced_subset
from tempbench.eval.features import prepare_features
from tempbench.eval.linear import linear_probe
from tempbench.pairings.views import sharded_features
from tempbench.tracking import NullTracker
from tempbench.train.recipe import Progress, build_setup, run_epochs


def cifar_probes() -> dict[str, tuple[torch.Tensor, ...]]:
    suite = load_suite("cifar10-lt-long")
    config = next(c for c in suite.configs(seeds=[0], epochs=3) if c.strategy == "fixed")
    setup = build_setup(config)
    run_epochs(setup, Progress(), None, NullTracker(), None, None)
    data = setup.data
    bank = prepare_features(sharded_features(setup, setup.train.images))
    labels = data.train_labels[setup.train.train_idx]
    test = prepare_features(sharded_features(setup, data.test_images)), data.test_labels
    few = balanced_subset(labels, data.num_classes, 0)
    balanced = prepare_features(sharded_features(setup, data.uncut_train_images))
    return {"cifar10-lt linear": (bank, labels, *test), "cifar10-lt few-shot": (bank[few], labels[few], *test),
            "cifar10-lt full-shot": (balanced, data.uncut_train_labels, *test)}


def digits_probe() -> tuple[torch.Tensor, ...]:
    x, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))
    x, y = prepare_features(torch.tensor(x[perm], dtype=torch.float32)), torch.tensor(y[perm])
    cut = int(0.7 * len(y))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="writes compare.md there")
    parser.add_argument("--skip", nargs="*", default=[], metavar="PROBE",
                        help="probes to leave out, e.g. full-shot (its plain fit alone takes ~15 min on one thread)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = {"digits pixels": digits_probe(), **cifar_probes()}
    cases = {name: case for name, case in cases.items() if not any(name.endswith(skip) for skip in args.skip)}
    lines = ["| probe | n × d | whitened s | plain s | plain ÷ whitened | refit iterations (w / p) | λ (w / p) "
             "| test top-1 (w / p) | test predictions differing | objective (w − p) ÷ p |", "|" + "---|" * 10]
    print(lines[0], flush=True)
    for name, (x, y, tx, ty) in cases.items():
        res, secs = {}, {}
        for whiten in (True, False):
            start = time.perf_counter()
            res[whiten] = linear_probe(x, y, tx, int(y.max()) + 1, seed=0, whiten=whiten)
            secs[whiten] = time.perf_counter() - start
        w, p = res[True], res[False]
        gap = f"{(w.objective - p.objective) / p.objective:.1e}" if w.wd == p.wd else "n/a (λ differs)"
        acc = {k: 100.0 * (r.test_pred == ty).double().mean().item() for k, r in res.items()}
        line = (f"| {name} | {x.shape[0]:,} × {x.shape[1]} | {secs[True]:.1f} | {secs[False]:.1f} | "
                f"{secs[False] / secs[True]:.1f} | {w.iterations} / {p.iterations} | {w.wd:g} / {p.wd:g} | "
                f"{acc[True]:.2f} / {acc[False]:.2f} | {int((w.test_pred != p.test_pred).sum())} of {len(ty):,} | "
                f"{gap} |")
        lines.append(line)
        print(line, flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        skip = f" --skip {' '.join(args.skip)}" if args.skip else ""
        text = (f"Made by `python results/perf/probe-solver/compare.py --out results/perf/probe-solver{skip}` "
                f"({torch.get_num_threads()} thread, torch {torch.__version__}).\n\n" + "\n".join(lines) + "\n")
        (args.out / "compare.md").write_text(text)


if __name__ == "__main__":
    main()
