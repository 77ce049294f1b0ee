"""Run configuration, resolved once.

A `RunConfig` is one training run, frozen and fully resolved: the dataset's card read once (its long-tail cut —
imbalance factor, profile, n_max — and image size become fields), the pairing the dataset declares, the strategy
class for that pairing and its config built and checked once with every default filled in. Whatever
the source — a suite file, command-line flags and `--set key=value`, an Optuna trial, a benchmark — it goes through
`resolve_run_config` before any data loads, and `RunConfig.hash` is taken over those resolved values, so one
experiment has one hash however it was spelled.

A suite (TOML, shipped in `bench/suites/` or any path) is a grid of runs: datasets × strategies × seeds with shared
`[run]` settings and per-strategy `[hyperparameters.NAME]` tables; `load_suite` resolves every run of it up front,
so a typo fails before the first run trains.
"""

from __future__ import annotations

import codecs
import copy
import dataclasses
import hashlib
import json
import re
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tempbench.datasets import Card, dataset_pairing
from tempbench.datasets.build import resolve_card
from tempbench.datasets.long_tail import PROFILES, check_class_order, check_long_tail
from tempbench.eval import list_metrics
from tempbench.pairings import Pairing, get_pairing
from tempbench.strategies import Strategy, get_strategy_class, list_strategies, reserve_hyperparameter_names
from tempbench.util import check_type, did_you_mean


@dataclass(frozen=True)
class RunConfig:
    """One training run, resolved. Learning rates are per 256 examples and scale linearly with the batch size
    (SimCLR). Built only by `resolve_run_config`, which also fills the three resolved objects at the end: the
    dataset's card, the pairing and the strategy class. Those are not settings: `to_dict` and the hash record the
    names and values they were resolved from (the card's long-tail cut and image size are fields of their own)."""

    strategy: str = "isogclr"
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # the strategy's, resolved (defaults filled in)
    dataset: str = "digits-lt"  # a card name or a source string (imagefolder:PATH, idx:PATH, hf:NAME, ...)
    long_tail: float = 1.0  # imbalance factor r in (0, 1] of the training split; 1 = balanced
    long_tail_profile: str | None = None  # exp | step | flat, when the training split is cut (the card's, or "exp")
    n_max: int | None = None  # images kept of the largest class (None: all of them)
    n_total: int | None = None  # the flat profile's training images in all (a balanced cut matched in size)
    # which class gets which count of the cut: label (class 0 the head) | reversed | permutation:SEED | [class ids]
    class_order: str | list[int] = "label"
    subset_seed: int = 0  # which images the long-tail cut keeps: one subset across run seeds (the LDAM-DRW convention)
    image_size: int | None = None  # side of the images a run sees; None = the source's own (no card)
    encoder: str = "small_cnn"  # small_cnn | resnet18 | resnet50 (the image tower of an image_text run)
    text_tower: str = "minilm"  # image_text only: minilm (frozen all-MiniLM-L6-v2 + projector) | hf:NAME (trainable)
    towers: str = "trained"  # image_text: trained (the image encoder learns) | locked (pretrained, frozen, cached)
    epoch_by: str = "images"  # image_text: images (one caption per image an epoch) | pairs (every pair once)
    # image_text: what indexes per-sample strategy state: pair (both anchors' state per (image, caption) pair,
    # FastCLIP) | image_caption (the image anchor's per image, the text anchor's per pair: the iSogCLR authors')
    state_index: str = "pair"
    norm: str = "batch"  # batch | group (batch-independent) | sync_batch (BatchNorm synchronised across processes)
    projector_hidden: int = 256
    projector_out: int = 128
    projector_layers: int = 2  # linear layers of each projection head (1: a linear head)
    feature_dropout: float = 0.0  # image_text: dropout on the frozen inputs of the heads (locked features, MiniLM)
    epochs: int = 20
    batch_size: int = 256  # the global batch
    optimizer: str = "sgd"  # sgd | lars | adamw
    lr: float = 0.3  # per 256 examples
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    seed: int = 0  # initialisation, data order and augmentation
    val_fraction: float = 0.0  # training images held out (stratified) for validation metrics; 0 = all train
    monitor_every: int = 0  # epochs between validation monitors (views: needs val_fraction > 0); 0 = never
    checkpoint_every: int = 0  # epochs between checkpoints; the last epoch is always saved when an out dir is given
    log_every: int = 10  # steps between host syncs (progress, NaN check)
    eval_backend: str = "auto"  # kNN backend: auto | faiss | torch (identical results)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # CPU threads; 0 = auto: 1 per run of a suite (its runs in parallel processes), for `train` and
    # study trials 1 or all cores, whichever steps faster on this machine right now
    precision: str = "auto"  # encoder: auto (bf16 autocast + channels_last on CUDA, float32 on CPU) | bf16 | fp32
    progress: bool = True  # progress bars
    compile: bool = False  # torch.compile the encoder (nn.Module.compile, in place); same model, another kernel path
    # ---- resolved from the names above (see the class docstring) ----
    pairing: Pairing = field(default_factory=lambda: get_pairing("views"), compare=False)
    card: Card | None = field(default=None, compare=False, repr=False)
    strategy_class: type[Strategy] | None = field(default=None, compare=False, repr=False)
    strategy_config: object = field(default=None, compare=False, repr=False)  # its Config, built and checked once

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("epochs", "batch_size", "projector_hidden", "projector_out", "projector_layers", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("monitor_every", "checkpoint_every", "subset_seed", "seed", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ValueError("lr must be > 0, weight_decay >= 0 and warmup_epochs >= 0")
        if not 0.0 <= self.feature_dropout < 1.0:
            raise ValueError(f"feature_dropout must be in [0, 1), got {self.feature_dropout!r}")
        if not 0.0 <= self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in [0, 0.5), got {self.val_fraction!r}")
        if not 0.0 < self.long_tail <= 1.0:
            raise ValueError(f"long_tail (imbalance factor) must be in (0, 1], got {self.long_tail!r}")
        if self.long_tail_profile not in (None, *PROFILES):
            raise ValueError(f"long_tail_profile must be one of {PROFILES}, got {self.long_tail_profile!r}")
        if self.n_max is not None and self.n_max < 1:
            raise ValueError(f"n_max must be >= 1, got {self.n_max!r}")
        self._check_cut_shape()
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be one of 'auto', 'bf16', 'fp32'; got {self.precision!r}")
        if self.towers not in ("trained", "locked"):
            raise ValueError(f"towers must be 'trained' or 'locked', got {self.towers!r}")
        if self.epoch_by not in ("images", "pairs"):
            raise ValueError(f"epoch_by must be 'images' or 'pairs', got {self.epoch_by!r}")
        if self.state_index not in ("pair", "image_caption"):
            raise ValueError(f"state_index must be 'pair' or 'image_caption', got {self.state_index!r}")
        if self.norm not in ("batch", "group", "sync_batch"):
            raise ValueError(f"norm must be one of 'batch', 'group', 'sync_batch'; got {self.norm!r}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size!r}")
        self.pairing.check(self)

    def _check_cut_shape(self) -> None:
        """The flat profile's n_total, and a class order only where the training split is cut."""
        if self.n_total is not None or self.long_tail_profile == "flat":
            check_long_tail(self.long_tail, self.long_tail_profile or "exp", self.n_max, self.n_total)
        check_class_order(self.class_order)
        cut = self.long_tail < 1.0 or self.n_max is not None or self.n_total is not None
        if self.class_order != "label" and not cut:
            raise ValueError(f"class_order {self.class_order!r} orders the classes of a long-tail cut, and this run "
                             "keeps every training image: set long_tail < 1, n_max or the flat profile's n_total")

    def to_dict(self) -> dict[str, Any]:
        """Every setting by name, JSON-ready: the pairing as its name, the card and the strategy class left out (the
        dataset and strategy names, the card's cut and the resolved hyperparameters stand for them), and a setting
        of `RECORDED_WHEN_SET` left out at its default."""
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)
               if f.name not in RESOLVED_OBJECTS
               and not (f.name in RECORDED_WHEN_SET and getattr(self, f.name) == RECORDED_WHEN_SET[f.name])}
        return {**out, "pairing": self.pairing.name}

    def hash(self) -> str:
        """Hash of the resolved experiment, leaving out the seed and how it runs (so seeds of one configuration
        share it): the key that groups rows into one leaderboard cell."""
        data = {k: v for k, v in self.to_dict().items() if k not in UNHASHED}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


# How a run executes, not what it computes: left out of the hash (eval backends give identical results).
EXECUTION_SETTINGS = ("device", "threads", "precision", "progress", "log_every", "checkpoint_every", "compile",
                      "eval_backend")
UNHASHED = ("seed", *EXECUTION_SETTINGS)
# objects, not values: to_dict leaves them out (`pairing` is recorded by name)
RESOLVED_OBJECTS = ("card", "strategy_class", "strategy_config")
# Settings added after results existed -> the default those results ran with. `to_dict` records one only when it
# differs from that default, so the hash, the row's config and the checkpoints of every earlier configuration stay
# what they were (earlier rows keep their cells, earlier sweeps and checkpoints resume).
RECORDED_WHEN_SET: dict[str, Any] = {"state_index": "pair", "projector_layers": 2, "feature_dropout": 0.0,
                                     "n_total": None, "class_order": "label"}
# Fields that are not `--set` run settings: the strategy and its hyperparameters have their own channels, and the
# pairing, card and strategy class are resolved from the dataset and strategy names.
NOT_SETTINGS = ("strategy", "hyperparameters", "pairing", *RESOLVED_OBJECTS)


def run_setting_names() -> list[str]:
    """The keys `--set` and a suite's [run] table accept."""
    return [f.name for f in dataclasses.fields(RunConfig) if f.name not in NOT_SETTINGS]


# A strategy hyperparameter named like a run setting could not be routed by `--set`: refused at registration.
reserve_hyperparameter_names([*run_setting_names(), *NOT_SETTINGS], owner="a run setting")


def check_types(config: Any) -> None:
    """Raise ValueError when a dataclass field holds a value of the wrong type (ints are accepted for floats and
    stored as floats) or a non-finite float: `util.check_type`, the rule strategy hyperparameters follow too."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        object.__setattr__(config, f.name, check_type(f.name, getattr(config, f.name), hints[f.name]))


# ---- resolution ---------------------------------------------------------------------------------------------------
def resolve_run_config(strategy: str, dataset: str, *, settings: Mapping[str, Any] | None = None,
                       hyperparameters: Mapping[str, Any] | None = None,
                       assignments: Sequence[str] = ()) -> RunConfig:
    """The one way to a RunConfig. In order, each thing once: the dataset's card (None for a source string), the
    pairing the dataset declares, the strategy class for that pairing, the strategy's hyperparameters checked
    against its config with defaults and presets filled in, the run `settings` checked by name and type, and the
    data settings (long-tail cut, image size) from the card unless the settings give them.

    assignments: `--set key=value` strings, routed to run settings or hyperparameters by name (`split_assignments`);
    a key also given in `settings` (a command-line flag) with another value is an error. Unknown names raise
    ValueError naming the valid ones."""
    card = resolve_card(dataset)
    pairing = resolve_pairing(dataset, card)
    strategy_class = get_strategy_class(strategy, pairing.name)
    assigned, assigned_hp = split_assignments(assignments, strategy_class)
    settings = merge_flags(assigned, settings or {})
    check_names(settings, run_setting_names(), "run setting")
    strategy_config = strategy_class.build_config(**{**dict(hyperparameters or {}), **assigned_hp})
    values = {**settings, **pairing.data_settings(card, settings)}
    resolved = _jsonable(dataclasses.asdict(strategy_config))
    return RunConfig(strategy=strategy, dataset=dataset, hyperparameters=resolved, **values, pairing=pairing,
                     card=card, strategy_class=strategy_class, strategy_config=strategy_config)


def resolve_pairing(dataset: str, card: Card | None = None) -> Pairing:
    """The pairing a dataset declares (its card's, or its source kind's), from the name alone: nothing loads."""
    card = card if card is not None else resolve_card(dataset)
    return get_pairing(card.pairing if card is not None else dataset_pairing(dataset))


def check_names(values: Mapping[str, Any], valid: Sequence[str], kind: str, also: str = "") -> None:
    """ValueError for the first unknown key, with a did-you-mean and the valid names (plus `also`, a hint)."""
    for key in values:
        if key not in valid:
            raise ValueError(f"unknown {kind} {key!r}{did_you_mean(key, valid)}; valid: {', '.join(valid)}{also}")


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    """Tuples as lists, so a config read back from JSON (a checkpoint, a row) compares equal."""
    return json.loads(json.dumps(dict(values)))


def split_assignments(items: Sequence[str], strategy_class: type[Strategy]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--set key=value` strings -> (run settings, strategy hyperparameters). Values are JSON/TOML literals
    (`0.3`, `true`, `[[0, 0.5], [10, 0.1]]`, `null`) or plain strings. No name is both (see the registry), so the
    routing is unambiguous; a key that is neither is an error listing both kinds."""
    hp_names = strategy_class.accepted_hyperparameters()
    settings, hyperparameters = {}, {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        target = settings if key in run_setting_names() else hyperparameters if key in hp_names else None
        if target is None:
            names = [*run_setting_names(), *hp_names]
            raise ValueError(f"--set {key}: not a run setting nor a hyperparameter of {strategy_class.name!r}"
                             f"{did_you_mean(key, names)}. Run settings: {', '.join(run_setting_names())}. "
                             f"{strategy_class.name} hyperparameters: {', '.join(hp_names) or 'none'}")
        target[key] = parse_literal(raw)
    return settings, hyperparameters


def merge_flags(settings: Mapping[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """`settings` plus the command-line `flags` that were given (not None); a flag that disagrees with `--set` is an
    error (the same rule in every command)."""
    out = dict(settings)
    for key, value in flags.items():
        if value is None:
            continue
        if key in out and out[key] != value:
            raise ValueError(f"--{key.replace('_', '-')} {value} and --set {key}={out[key]} disagree; give one")
        out[key] = value
    return out


def parse_literal(raw: str) -> Any:
    """A `--set` value: JSON first (`0.3`, `true`, `null`, lists), then a TOML literal, else the string itself."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        try:
            return tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            return raw


# ---- suites ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Suite:
    """A sweep: every strategy × dataset × seed, each a resolved `RunConfig`."""

    name: str
    description: str
    datasets: tuple[str, ...]
    strategies: tuple[str, ...]
    seeds: tuple[int, ...]
    run: Mapping[str, Any]
    hyperparameters: Mapping[str, Mapping[str, Any]]
    text: str = ""  # the TOML it was read from (tracked with the sweep)
    # more configurations of listed strategies, each its own leaderboard cell: name -> {"strategy": S, hyperparameters}
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # the leaderboard metric whose Δ tests Holm corrects together: declared before the runs (None: every metric's)
    primary_metric: str | None = None
    tuning: Tuning | None = None  # the `tuned` ruleset ([tuning]); None: the `defaults` ruleset only
    # per-sample strategies whose achieved median τ gets τ-matched `fixed` and same-estimator global-τ cells
    tau_matched: tuple[str, ...] = ()

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        """(strategy, hyperparameters) of every cell per dataset and seed: the strategies, then the variants."""
        own = [(s, dict(self.hyperparameters.get(s, {}))) for s in self.strategies]
        extra = [(v["strategy"], {k: x for k, x in v.items() if k != "strategy"}) for v in self.variants.values()]
        return own + extra

    def configs(self, seeds: Sequence[int] | None = None, **settings: Any) -> list[RunConfig]:
        """Every run, resolved; `settings` override the suite's [run] table."""
        return [resolve_run_config(s, d, settings={**self.run, **settings, "seed": seed}, hyperparameters=hp)
                for seed in (self.seeds if seeds is None else seeds) for d in self.datasets
                for s, hp in self.entries()]


SUITE_KEYS = ("name", "description", "datasets", "strategies", "seeds", "run", "hyperparameters", "variants",
              "primary_metric", "tuning", "controls")
TUNING_KEYS = ("trials", "metric", "seeds", "strategies", "sampler_seed")
CONTROL_KEYS = ("tau_matched",)


@dataclass(frozen=True)
class Tuning:
    """A suite's `[tuning]` table: the `tuned` ruleset (MLCommons AlgoPerf's external tuning). Every strategy of
    `strategies` searches its own declared space with the same `trials` Sobol points, each trained at every tuning
    seed (disjoint from the reporting seeds) and scored on `metric`, a validation metric; the point with the best mean
    then trains on the reporting seeds and is tested once (`tempbench.study.tuning`)."""

    trials: int
    metric: str
    seeds: tuple[int, ...]
    strategies: tuple[str, ...]
    sampler_seed: int = 0


def list_suites() -> list[str]:
    """Names of the suites shipped in `tempbench/suites` (`quick`, `cifar10-lt-cpu`, ...)."""
    return sorted(p.name.removesuffix(".toml") for p in resources.files("tempbench").joinpath("suites").iterdir()
                  if p.name.endswith(".toml"))


def load_suite(name_or_path: str) -> Suite:
    """A shipped suite by name (`quick`, `cifar10-lt-cpu`, ...) or a TOML file by path, with every run resolved
    (unknown keys, strategies, hyperparameters and bad values fail here, before anything trains; so do a file that
    is not UTF-8 TOML and an empty one, each naming the line at fault)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"suite file {path} does not exist")
        text = read_suite_text(path)
        data = parse_suite(path, text)
    elif name_or_path in list_suites():
        text = resources.files("tempbench").joinpath("suites", f"{name_or_path}.toml").read_text()
        data = tomllib.loads(text)
    else:
        raise ValueError(f"unknown suite {name_or_path!r}{did_you_mean(name_or_path, list_suites())}; shipped "
                         f"suites: {', '.join(list_suites())} (or a path to a .toml file)")
    suite = build_suite(data, default_name=path.stem, text=text)
    suite.configs()  # resolves every run now: a typo in any of them fails before the first trains
    return suite


# Byte-order marks of the encodings an editor saves "Unicode" text in; TOML is UTF-8 (a UTF-8 mark is tolerated)
FOREIGN_MARKS = {"UTF-32": (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE), "UTF-16": (codecs.BOM_UTF16_LE,
                                                                                   codecs.BOM_UTF16_BE)}


def read_suite_text(path: Path) -> str:
    """The text of a suite file; ValueError naming the encoding or the line when it is not UTF-8."""
    data = path.read_bytes()
    for encoding, marks in FOREIGN_MARKS.items():  # UTF-32 first: its little-endian mark starts like UTF-16's
        if data.startswith(marks):
            raise ValueError(f"suite file {path} is {encoding} (it starts with a {encoding} byte-order mark); TOML "
                             f"is UTF-8: save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ValueError(f"suite file {path}, line {line}: not UTF-8 (byte 0x{data[exc.start]:02x}); TOML is "
                         f"UTF-8: save it as UTF-8") from None


def parse_suite(path: Path, text: str) -> dict[str, Any]:
    """The TOML table of a suite file; ValueError naming the line of a syntax error, or saying the file is empty
    (an empty suite would otherwise run the default grid without a word)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"suite file {path}, {toml_error_place(str(exc), text)}") from None
    if not data:
        raise ValueError(f"suite file {path} is empty: name at least its strategies and datasets, e.g. strategies = "
                         f"[\"fixed\", \"isogclr\"] and datasets = [\"digits\"] (the shipped suites are examples: "
                         f"{', '.join(list_suites())})")
    return data


def toml_error_place(message: str, text: str) -> str:
    """"line L, column C: invalid TOML (what)" from tomllib's message ("Invalid value (at line 2, column 15)"); an
    error "at end of document" is placed on the file's last line."""
    found = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message)
    if found is not None:
        return f"line {found[2]}, column {found[3]}: invalid TOML ({found[1]})"
    what = message.removesuffix(" (at end of document)")
    return f"line {text.count(chr(10)) + 1} (end of file): invalid TOML ({what})"


def build_suite(data: dict[str, Any], default_name: str, text: str = "") -> Suite:
    """A `Suite` from a parsed TOML table; unknown keys and strategies fail here. `strategies = "all"` means every
    strategy of the datasets' one pairing."""
    check_names(data, SUITE_KEYS, "suite key")
    datasets = tuple(data.get("datasets", ["digits", "digits-lt"]))
    pairings = {dataset_pairing(d) for d in datasets}  # the names only: each run resolves its own pairing
    strategies = data.get("strategies", "all")
    if strategies == "all":
        if len(pairings) > 1:
            raise ValueError(f"strategies = \"all\" needs datasets of one pairing; {list(datasets)} mix {pairings}")
        strategies = list_strategies(pairing=pairings.pop())
    strategies = list(strategies)
    hyperparameters = {k: dict(v) for k, v in data.get("hyperparameters", {}).items()}
    check_names(hyperparameters, strategies, "strategy in [hyperparameters]")
    variants = {k: dict(v) for k, v in data.get("variants", {}).items()}
    for name, variant in variants.items():
        if not isinstance(variant.get("strategy"), str):
            raise ValueError(f"[variants.{name}] needs strategy = \"NAME\" (the strategy it configures)")
    seeds = data.get("seeds", 1)
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
    controls = dict(data.get("controls", {}))
    check_names(controls, CONTROL_KEYS, "key in [controls]")
    return Suite(name=data.get("name", default_name), description=data.get("description", ""),
                 datasets=datasets, strategies=tuple(strategies), seeds=seeds, run=dict(data.get("run", {})),
                 hyperparameters=hyperparameters, text=text, variants=variants,
                 primary_metric=check_primary_metric(data.get("primary_metric"), pairings),
                 tuning=build_tuning(data["tuning"], strategies, seeds, pairings) if "tuning" in data else None,
                 tau_matched=check_tau_matched(controls.get("tau_matched", []), strategies, pairings))


def _leaderboard_metrics(pairings: set[str], split: str) -> list[str]:
    return [m.name for m in list_metrics(split=split) if m.pairing in pairings]


def check_primary_metric(metric: Any, pairings: set[str]) -> str | None:
    """The suite's declared primary metric: a test metric of its datasets' pairing, or None (not declared)."""
    if metric is None:
        return None
    valid = _leaderboard_metrics(pairings, "test")
    if metric not in valid:
        raise ValueError(f"primary_metric {metric!r} is not a test metric of {'/'.join(sorted(pairings))} data"
                         f"{did_you_mean(str(metric), valid)}; valid: {', '.join(valid)}")
    return metric


def build_tuning(table: Any, strategies: Sequence[str], seeds: Sequence[int], pairings: set[str]) -> Tuning:
    """The checked `[tuning]` table: at least one trial, a validation metric of the suite's pairing, tuning seeds
    disjoint from the reporting seeds (a choice made at a reporting seed would select on the runs it reports), and
    strategies the suite runs."""
    if not isinstance(table, Mapping):
        raise ValueError("[tuning] must be a table: trials = N, metric = \"val_...\", seeds = [...]")
    check_names(table, TUNING_KEYS, "key in [tuning]")
    trials = table.get("trials")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"[tuning] trials must be a whole number >= 1 (the points each strategy searches), "
                         f"got {trials!r}")
    metric = table.get("metric", "")
    valid = _leaderboard_metrics(pairings, "val")
    if metric not in valid:
        raise ValueError(f"[tuning] metric {metric!r} is not a validation metric of {'/'.join(sorted(pairings))} "
                         f"data (tuning never selects on the test split){did_you_mean(str(metric), valid)}; valid: "
                         f"{', '.join(valid)}")
    tuning_seeds = table.get("seeds", [1000])
    tuning_seeds = tuple(range(1000, 1000 + tuning_seeds)) if isinstance(tuning_seeds, int) else tuple(tuning_seeds)
    if not tuning_seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in tuning_seeds):
        raise ValueError(f"[tuning] seeds must be a count or a list of seeds >= 0, got {table.get('seeds')!r}")
    shared = sorted(set(tuning_seeds) & set(seeds))
    if shared:
        raise ValueError(f"[tuning] seeds {shared} are also reporting seeds: tuning seeds must be disjoint from the "
                         f"suite's seeds {list(seeds)}")
    chosen = tuple(table.get("strategies", strategies))
    check_names(dict.fromkeys(chosen), list(strategies), "strategy in [tuning] strategies")
    sampler_seed = table.get("sampler_seed", 0)
    if isinstance(sampler_seed, bool) or not isinstance(sampler_seed, int):
        raise ValueError(f"[tuning] sampler_seed must be an int, got {sampler_seed!r}")
    return Tuning(trials=trials, metric=metric, seeds=tuning_seeds, strategies=chosen, sampler_seed=sampler_seed)


def check_tau_matched(names: Any, strategies: Sequence[str], pairings: set[str]) -> tuple[str, ...]:
    """`[controls] tau_matched`: strategies of the suite with a per-sample τ (a global τ has nothing to match)."""
    names = [names] if isinstance(names, str) else list(names)
    check_names(dict.fromkeys(names), list(strategies), "strategy in [controls] tau_matched")
    for name in names:
        for pairing in pairings:
            if not get_strategy_class(name, pairing).per_sample_tau:
                raise ValueError(f"[controls] tau_matched: {name!r} has one global τ; τ-matched baselines are for "
                                 "per-sample τ strategies")
    return tuple(names)
