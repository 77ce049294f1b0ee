"""Every `tempbench` command's parser, declared in one place with one grammar:

- `--out DIR` is always a directory, checked before any work (`cli.check_outputs`); `--json` prints the result as
  JSON on every command that produces one;
- `--device`, `--seed` (one value) / `--seeds` (a list or range), `--set KEY=VALUE`, `--tracking-uri` /
  `--no-tracking` mean the same everywhere (the `add_*` helpers below);
- every option's help shows its default.

Each command names its implementation as "module:function"; `tempbench.cli.main` imports it only when the command
runs, so `tempbench --help` stays instant and library modules can import what they need at the top.
"""

from __future__ import annotations

import argparse

from tempbench import __version__

DEFAULT_SUITE = "quick"
DEFAULT_TRIALS = 20


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every option's help, descriptions kept as written. An option whose help already says what
    happens when it is unset (no default value: None, an empty list) is left as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, [], "", argparse.SUPPRESS) or "unset" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def command(subparsers: argparse._SubParsersAction, name: str, impl: str, help: str,
            description: str = "") -> argparse.ArgumentParser:
    """Add sub-command `name` whose implementation is `impl` ("module:function", imported only when it runs; stored
    as `args.impl`); the description defaults to the one-line help."""
    p = subparsers.add_parser(name, help=help, description=description or help, formatter_class=Formatter)
    p.set_defaults(impl=impl)
    return p


# ---- shared options -------------------------------------------------------------------------------------------
def add_device(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """--device: where to run (unset: the run settings decide, "auto" picks CUDA when present)."""
    p.add_argument("--device", default=default, help="auto | cpu | cuda | cuda:N (unset: the run settings' auto)")


def add_out(p: argparse.ArgumentParser, default: str | None, what: str) -> None:
    """--out DIR, always a directory; `what` says what the command writes there (and the default when unset)."""
    p.add_argument("--out", default=default, metavar="DIR", help=f"output directory: {what}")


def add_json(p: argparse.ArgumentParser) -> None:
    """--json: the result as JSON on stdout; progress lines stay on stderr, so stdout parses."""
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout (progress on stderr)")


def add_set(p: argparse.ArgumentParser, what: str) -> None:
    """--set KEY=VALUE, repeatable (collected into a list); `what` says which keys the command accepts."""
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=what)


def add_figures(p: argparse.ArgumentParser) -> None:
    """--no-figures: leaderboard tables without the figures."""
    p.add_argument("--no-figures", action="store_true", help="write the leaderboard tables only (figures take seconds)")


def add_tracking(p: argparse.ArgumentParser) -> None:
    """--tracking-uri URI and --no-tracking: where MLflow runs go (unset: a SQLite store in --out), or nowhere."""
    p.add_argument("--tracking-uri", default=None, metavar="URI",
                   help="MLflow tracking URI (unset: a SQLite store in --out)")
    p.add_argument("--no-tracking", action="store_true", help="write no MLflow runs")


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """Run settings that have their own flags (a flag and a `--set` of the same key that disagree are an error)."""
    p.add_argument("--epochs", type=int, default=None, help="training epochs (unset: the run settings')")
    add_device(p)


def build_parser() -> argparse.ArgumentParser:
    """The `tempbench` parser with every sub-command; each sets `args.impl`, the "module:function" to run."""
    parser = argparse.ArgumentParser(
        prog="tempbench", formatter_class=Formatter,
        description="Benchmark temperature strategies in contrastive self-supervised learning. Start with "
                    "`tempbench run` (the quick suite); `tempbench COMMAND --help` for each command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (add_train, add_run, add_leaderboard, add_sensitivity, add_perf, add_data, add_strategies,
                add_metrics):
        add(sub)
    return parser


# ---- commands ---------------------------------------------------------------------------------------------------
def add_train(sub: argparse._SubParsersAction) -> None:
    """`tempbench train`: one strategy on one dataset, one seed; optionally over N local processes (torchrun)."""
    p = command(sub, "train", "tempbench.cli.train:main", "train and evaluate one run; prints its result row")
    p.add_argument("--strategy", required=True, help="a registered strategy (`tempbench strategies` lists them)")
    p.add_argument("--dataset", required=True, help="a card (digits, cifar10-lt, ...; `tempbench data list`) or a "
                   "source string (imagefolder:PATH, hf:NAME, ...)")
    p.add_argument("--seed", type=int, default=0, help="run seed: initialisation, data order, augmentation")
    p.add_argument("--long-tail", type=float, default=None, metavar="R",
                   help="imbalance factor in (0, 1] (unset: the card's; 1 = balanced)")
    p.add_argument("--image-size", type=int, default=None, metavar="S", help="image side (unset: the card's)")
    add_run_flags(p)
    add_set(p, "a run setting (epochs, lr, encoder, ...) or a strategy hyperparameter (tau, rho, ...); repeatable")
    add_out(p, "runs/train", "runs.csv, checkpoints, τ tables, the MLflow store")
    p.set_defaults(appends_rows=True)  # DIR/runs.csv is checked before the run trains (`cli.check_outputs`)
    p.add_argument("--resume", default=None, metavar="CKPT", help="continue from a checkpoint of the same config")
    p.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="train on N processes of this machine (torchrun; one GPU each, or gloo on the CPU); the "
                        "batch size stays the global batch")
    add_json(p)
    add_tracking(p)


def add_run(sub: argparse._SubParsersAction) -> None:
    """`tempbench run`: every run of a suite not yet in runs.csv, then its leaderboard; with --storage a grid study
    on shared Optuna storage that any number of machines work through together."""
    p = command(sub, "run", "tempbench.cli.run:main", "train every run of a suite (default: quick), then print its "
                "leaderboard", "Train the runs of a suite (strategies × datasets × seeds) that runs.csv does not "
                "hold yet, then print the leaderboard. An interrupted suite continues where it stopped.")
    p.add_argument("--suite", default=DEFAULT_SUITE, help="a shipped suite (quick, cifar10-lt-cpu, ...) or a "
                   "TOML path")
    p.add_argument("--seeds", default=None, metavar="LIST", help="seeds as a list or range, e.g. 0,1,2 or 0-4 "
                   "(unset: the suite's)")
    add_run_flags(p)
    add_set(p, "override a run setting of every run (epochs, lr, ...); repeatable")
    add_out(p, None, "runs.csv, leaderboard, figures, MLflow store (unset: runs/SUITE)")
    p.set_defaults(appends_rows=True)
    p.add_argument("--rerun", action="store_true", help="train every run again: a new sweep (STUDY-rerunK) that later "
                   "`tempbench run` on DIR join")
    p.add_argument("--checkpoints", action="store_true", help="keep each run's last checkpoint (DIR/checkpoints)")
    add_figures(p)
    p.add_argument("--storage", default=None, metavar="URL", help="run the suite as a grid study on this Optuna "
                   "storage (postgresql://USER@HOST/DB, ...): the same command on any number of machines shares one "
                   "sweep and trains no run twice")
    p.add_argument("--study", default=None, help="the sweep's study name (unset: suite-SUITE)")
    p.add_argument("--devices", default=None, metavar="LIST", help="one training per device at a time, in worker "
                   "processes: 0,1,2,3 (CUDA devices) or cpu,cpu (unset: a CPU suite gets one 1-thread worker "
                   "process per core, any other suite one worker on the run settings' device; cpu: one worker, "
                   "in this process)")
    p.add_argument("--heartbeat", type=int, default=60, metavar="S", help="with --storage: seconds between a "
                   "run's heartbeats; a run silent for 2 × S is failed and trained again by another worker")
    add_json(p)
    add_tracking(p)


def add_leaderboard(sub: argparse._SubParsersAction) -> None:
    """`tempbench leaderboard`: tables and figures rebuilt from a runs.csv or from a sweep's Optuna storage."""
    p = command(sub, "leaderboard", "tempbench.cli.leaderboard:main", "aggregate result rows into leaderboard "
                "tables and figures", "Rebuild leaderboard.md, leaderboard.csv and the figures from result rows and "
                "print the table.")
    p.add_argument("runs", metavar="RUNS.csv", nargs="?", default=None, help="result rows, one per run (or "
                   "--storage)")
    p.add_argument("--storage", default=None, metavar="URL", help="read the rows of every finished run of a sweep "
                   "(`tempbench run --storage`) from this Optuna storage instead")
    p.add_argument("--study", default=None, help="with --storage: the sweep's study (unset: the storage's only one)")
    add_out(p, None, "leaderboard.md, leaderboard.csv and figures (unset: next to RUNS.csv; with --storage "
            "runs/STUDY)")
    p.add_argument("--metric", action="append", default=None, metavar="NAME",
                   help="a metric column (repeatable; unset: the registry's leaderboard metrics; `tempbench "
                        "metrics` lists them)")
    p.add_argument("--primary-metric", default=None, metavar="NAME",
                   help="the metric declared before the runs (a suite's primary_metric): Holm corrects its Δ only, "
                        "the other metrics' p are exploratory (unset: Holm over every Δ of each metric)")
    add_figures(p)
    add_json(p)


def add_sensitivity(sub: argparse._SubParsersAction) -> None:
    """`tempbench sensitivity`: one Optuna study per strategy (Sobol design, a grid, or TPE tuning), selecting on a
    val_ metric only, with optional seed repeats, then the report."""
    p = command(sub, "sensitivity", "tempbench.cli.sensitivity:main", "hyperparameter-sensitivity studies "
                "(Optuna) with a report", "One Optuna study per strategy on one dataset, each trial a training run; "
                "then a report of how much the validation metric moves across each strategy's search space, next "
                "to the seed noise. Re-running a command resumes its studies.")
    p.add_argument("--strategy", required=True, help="strategy name(s), comma-separated")
    p.add_argument("--dataset", required=True, help="dataset card or source (e.g. sklearn:digits)")
    p.add_argument("--trials", type=int, default=None, help=f"trials per strategy (unset: {DEFAULT_TRIALS}; "
                   "--grid: the whole grid); Sobol points are best balanced at a power of two")
    p.add_argument("--goal", choices=("sensitivity", "tune"), default="sensitivity", help="sensitivity: a "
                   "space-filling design (Sobol points, or --grid); tune: TPE search with the median pruner")
    p.add_argument("--grid", action="store_true", help="evaluate the strategy's fixed grid instead of Sobol points")
    p.add_argument("--grid-values", action="append", default=[], metavar="[STRATEGY.]PARAM=V1,V2",
                   help="with --grid: replace one grid parameter's values (a reduced grid); repeatable")
    p.add_argument("--prune", action="store_true", help="stop poor trials early (median pruner on the validation "
                   "monitor); pruned trials count in the spread at their last value (on with --goal tune)")
    p.add_argument("--repeats", type=int, default=0, metavar="K", help="then re-run K configurations (1: best, 2: "
                   "+ worst, 3: + median, by validation) over --repeat-seeds more seeds, for the seed noise")
    p.add_argument("--repeat-seeds", type=int, default=3, metavar="S", help="extra seeds per repeated "
                   "configuration (--seed + 1 ... --seed + S)")
    p.add_argument("--storage", default=None, help="Optuna storage: RDB URL (postgresql://USER@HOST/DB, ...) or "
                   "journal:PATH (unset: SQLite in --out)")
    p.add_argument("--study", default=None, help="study name (unset: STRATEGY-DATASET); several strategies get "
                   "-STRATEGY")
    p.add_argument("--seed", type=int, default=0, help="training seed of every trial, and the design's")
    p.add_argument("--workers", type=int, default=1, help="local worker processes sharing the trial budget")
    p.add_argument("--heartbeat", type=int, default=60, metavar="S", help="RDB storage: seconds between a "
                   "trial's heartbeats; a trial silent for 2 × S is failed and re-run by another worker")
    add_run_flags(p)
    add_set(p, "a run setting shared by every trial (batch_size, encoder, lr, ...); repeatable")
    p.add_argument("--lr-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="also search the learning rate, log-uniformly (not with --grid)")
    p.add_argument("--metric", default=None, help="validation metric to maximise (a val_... metric: studies never "
                   "select on test; its test twin is reported beside it) (unset: the dataset's pairing's, "
                   "val_knn200_top1 for labelled images, val_r_mean for image–caption data)")
    add_out(p, None, "report, Optuna storage, MLflow store (unset: runs/sensitivity-DATASET)")
    add_json(p)
    add_tracking(p)


def add_perf_options(p: argparse.ArgumentParser, default: object = None) -> None:
    """Options both `perf` and `perf strategies` take, so they work before or after the sub-command; the
    sub-command's copies default to SUPPRESS and never overwrite what was given before it."""
    # the main parser's copies carry the real defaults; the sub-command's all default to `default` (SUPPRESS)
    keep = (lambda v: v) if default is None else (lambda v: default)
    p.add_argument("--device", default=keep("auto"), help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=keep(0), help="torch CPU threads (0: torch's choice)")
    p.add_argument("--rounds", type=int, default=keep(0), help="timed rounds (0: by device and --quick)")
    add_out(p, keep(None), "writes perf.json (and perf.txt) there")
    p.add_argument("--json", action="store_true", default=keep(False), help="print JSON instead of the table")


def add_perf(sub: argparse._SubParsersAction) -> None:
    """`tempbench perf` (the full timing table against its goals) and its sub-command `perf strategies`."""
    p = command(sub, "perf", "tempbench.cli.perf:table", "performance benchmarks that print ratios",
                "Without WHAT: the full table — strategy overhead, pipeline efficiency, views/s, kNN backends and "
                "the linear probe, each ratio beside its goal. `perf strategies`: strategy-only timings.")
    add_perf_options(p)
    p.add_argument("--quick", action="store_true", help="fewer rounds, smaller CPU evaluation (≲ 2 min on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder (the compile run setting)")
    adv = p.add_argument_group("advanced (0 or unset: the defaults per device)")
    adv.add_argument("--encoder", default="", help="unset: small_cnn on CPU, resnet18 (CIFAR stem) on CUDA")
    adv.add_argument("--batch-size", type=int, default=0, help="images per step (0: 256 CPU, 512 CUDA)")
    adv.add_argument("--warmup", type=int, default=-1, help="untimed rounds first (-1: by device)")
    adv.add_argument("--steps", type=int, default=0, help="steps per timed block (0: 1 CPU, 4 CUDA)")
    adv.add_argument("--num-images", type=int, default=0, help="resident synthetic training images (0: by device)")
    adv.add_argument("--image-size", type=int, default=32, help="image side in pixels")
    adv.add_argument("--strategies", default="", help="comma-separated (unset: every registered strategy)")
    adv.add_argument("--eval-size", type=int, nargs=2, default=None, metavar=("N_TRAIN", "N_TEST"),
                     help="kNN / probe feature counts (unset: 50000 10000; CPU --quick 10000 2000)")
    adv.add_argument("--eval-dim", type=int, default=512, help="feature dimension d")
    adv.add_argument("--skip-eval", action="store_true", help="training rows only (e.g. a --compile rerun)")
    what = p.add_subparsers(dest="perf_command", metavar="WHAT")
    s = what.add_parser("strategies", help="strategy step time on random features, as a ratio to `fixed`",
                        formatter_class=Formatter, description="Forward + backward + update of each strategy on "
                        "random features, median over interleaved rounds, as a ratio to `fixed`.")
    s.set_defaults(impl="tempbench.cli.perf:strategies")
    add_perf_options(s, default=argparse.SUPPRESS)
    s.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024], metavar="B", help="batch sizes")
    s.add_argument("--dim", type=int, default=128, help="feature dimension d")
    s.add_argument("--strategies", default="", help="comma-separated names (unset: every registered strategy)")


def add_data(sub: argparse._SubParsersAction) -> None:
    """`tempbench data list` (cards and source kinds) and `tempbench data show` (what one card or source loads to)."""
    data = sub.add_parser("data", help="dataset cards and sources: list them, show what one loads to",
                          formatter_class=Formatter)
    what = data.add_subparsers(dest="data_command", metavar="WHAT", required=True)
    p = command(what, "list", "tempbench.cli.data:list_", "the dataset cards and the source kinds")
    add_json(p)
    p = command(what, "show", "tempbench.cli.data:show", "split sizes, per-class training counts and the long-tail "
                "hash of a dataset", "What a card or source string loads to: split sizes, training images per class "
                "after the long-tail cut, the cut's hash; --views also draws augmented view pairs.")
    p.add_argument("dataset", metavar="CARD|SOURCE", help="a card name (see `data list`) or a source string")
    p.add_argument("--long-tail", type=float, default=None, metavar="R",
                   help="imbalance factor in (0, 1] (unset: the card's; 1 = balanced)")
    p.add_argument("--image-size", type=int, default=None, metavar="S", help="image side (unset: the card's)")
    p.add_argument("--subset-seed", type=int, default=0, help="seed of the long-tail selection")
    p.add_argument("--views", action="store_true", help="also draw a grid of augmented view pairs (DIR/views.png)")
    add_out(p, ".", "where --views writes views.png")
    add_json(p)


def add_strategies(sub: argparse._SubParsersAction) -> None:
    """`tempbench strategies`: the strategy registry, per pairing."""
    p = command(sub, "strategies", "tempbench.cli.info:strategies", "every registered strategy with its "
                "pairings, capabilities, hyperparameters and defaults")
    add_json(p)


def add_metrics(sub: argparse._SubParsersAction) -> None:
    """`tempbench metrics`: the metric registry (name, split, pairing, label, protocol)."""
    p = command(sub, "metrics", "tempbench.cli.info:metrics", "every registered metric with its label, split and "
                "protocol")
    add_json(p)
