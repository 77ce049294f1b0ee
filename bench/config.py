"""Run configuration and suites.

`RunConfig` is one training run, strict: an unknown key or a value of the wrong type is an error naming the valid
keys. A suite (TOML, shipped in `bench/suites/` or any path) is a grid of runs: datasets × strategies × seeds with
shared `[run]` settings and per-strategy hyperparameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any


@dataclass
class RunConfig:
    """One training run. Learning rates are per 256 examples and scale linearly with the batch size (SimCLR)."""

    strategy: str = "isogclr"
    strategy_params: dict[str, Any] = field(default_factory=dict)  # keyword hyperparameters of the strategy
    dataset: str = "digits-lt"  # a card name or a source string (imagefolder:PATH, idx:PATH, hf:NAME, ...)
    long_tail: float | None = None  # imbalance factor r in (0, 1]; None: as the card says
    image_size: int | None = None  # None: as the card says
    encoder: str = "small_cnn"  # small_cnn | resnet18 | resnet50
    projector_hidden: int = 256
    projector_out: int = 128
    epochs: int = 20
    batch_size: int = 256
    optimizer: str = "sgd"  # sgd | lars | adamw
    lr: float = 0.3  # per 256 examples
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    monitor_fraction: float = 0.1  # training images held out (stratified) for the per-epoch kNN monitor
    monitor_every: int = 1  # epochs between kNN monitor evaluations; 0 = never
    checkpoint_every: int = 0  # epochs between checkpoints; the last epoch is always saved when an out dir is given
    log_every: int = 10  # steps between host syncs (progress, NaN check)
    eval_backend: str = "auto"  # kNN backend: auto | faiss | torch
    progress: bool = True  # tqdm progress bar
    compile: bool = False  # torch.compile the encoder (nn.Module.compile, in place); same model, another kernel path

    def __post_init__(self) -> None:
        check_types(self)
        positive = ("epochs", "batch_size", "projector_hidden", "projector_out", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ValueError("lr must be > 0, weight_decay >= 0 and warmup_epochs >= 0")
        if not 0.0 <= self.monitor_fraction < 0.5:
            raise ValueError(f"monitor_fraction must be in [0, 0.5), got {self.monitor_fraction!r}")
        if self.long_tail is not None and not 0.0 < self.long_tail <= 1.0:
            raise ValueError(f"long_tail (imbalance factor) must be in (0, 1], got {self.long_tail!r}")

    def hash(self) -> str:
        """Hash of everything that defines the experiment except the seed and where it runs (groups seeds)."""
        data = dataclasses.asdict(self)
        for key in ("seed", "device", "progress", "log_every", "checkpoint_every", "compile"):
            data.pop(key)
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def check_types(config: Any) -> None:
    """Raise ValueError when a dataclass field holds a value of the wrong type (ints are accepted for floats)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        hint = hints[f.name]
        is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        allowed = tuple(typing.get_origin(t) or t for t in (typing.get_args(hint) if is_union else (hint,)))
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            setattr(config, f.name, float(value))
            continue
        if type(None) in allowed and value is None:
            continue
        if isinstance(value, bool) and bool not in allowed:
            ok = False
        else:
            ok = isinstance(value, tuple(t for t in allowed if isinstance(t, type)))
        if not ok:
            names = "/".join(getattr(t, "__name__", str(t)) for t in allowed)
            raise ValueError(f"{f.name} must be {names}, got {value!r}")


def run_config_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


def make_run_config(**values: Any) -> RunConfig:
    """RunConfig from keyword values; an unknown key is an error naming the valid ones."""
    unknown = sorted(set(values) - set(run_config_keys()))
    if unknown:
        raise ValueError(f"unknown run setting(s) {unknown}; valid: {run_config_keys()}")
    return RunConfig(**values)


def parse_assignments(items: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split `key=value` strings into (run settings, strategy hyperparameters); values are JSON/TOML literals
    (`0.3`, `true`, `[[0, 0.5], [10, 0.1]]`, `null`) or plain strings. Run-setting names take precedence."""
    run, strategy = {}, {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        value = parse_literal(raw)
        (run if key in run_config_keys() else strategy)[key.strip()] = value
    return run, strategy


def parse_literal(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        try:
            return tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            return raw


@dataclass
class Suite:
    """A sweep: every strategy × dataset × seed, each a `RunConfig` built from `run` plus per-strategy parameters."""

    name: str
    description: str
    datasets: list[str]
    strategies: list[str]
    seeds: int
    run: dict[str, Any]
    strategy_params: dict[str, dict[str, Any]]

    def configs(self, seeds: int | None = None, **overrides: Any) -> list[RunConfig]:
        n = seeds if seeds is not None else self.seeds
        return [make_run_config(**{**self.run, **overrides, "strategy": s, "dataset": d, "seed": seed,
                                   "strategy_params": dict(self.strategy_params.get(s, {}))})
                for seed in range(n) for d in self.datasets for s in self.strategies]


SUITE_KEYS = {"name", "description", "datasets", "strategies", "seeds", "run", "strategy_params"}


def list_suites() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files("tempbench").joinpath("suites").iterdir()
                  if p.name.endswith(".toml"))


def load_suite(name_or_path: str) -> Suite:
    """A shipped suite by name (`quick`, `cifar10-lt-cpu`, ...) or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"suite file {path} does not exist")
        text = path.read_text()
    elif name_or_path in list_suites():
        text = resources.files("tempbench").joinpath("suites", f"{name_or_path}.toml").read_text()
    else:
        raise ValueError(f"unknown suite {name_or_path!r}; shipped suites: {', '.join(list_suites())} (or a path)")
    data = tomllib.loads(text)
    unknown = sorted(set(data) - SUITE_KEYS)
    if unknown:
        raise ValueError(f"unknown suite key(s) {unknown}; valid: {sorted(SUITE_KEYS)}")
    return build_suite(data, default_name=path.stem)


def build_suite(data: dict[str, Any], default_name: str) -> Suite:
    from tempbench.strategies import get_strategy_class, list_strategies

    strategies = data.get("strategies", "all")
    strategies = list_strategies() if strategies == "all" else list(strategies)
    for s in strategies:
        get_strategy_class(s)  # unknown names fail now, listing the valid ones
    suite = Suite(name=data.get("name", default_name), description=data.get("description", ""),
                  datasets=list(data.get("datasets", ["digits", "digits-lt"])), strategies=strategies,
                  seeds=int(data.get("seeds", 1)), run=dict(data.get("run", {})),
                  strategy_params={k: dict(v) for k, v in data.get("strategy_params", {}).items()})
    suite.configs(seeds=1)  # validates the run settings before any work starts
    return suite
