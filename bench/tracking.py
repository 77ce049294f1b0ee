"""Experiment tracking behind a small interface: `NullTracker` (writes nothing) and `MlflowTracker`.

    tracker = create_tracker(enabled=True, tracking_uri=None, out_dir=out)   # SQLite store in out/mlflow.db
    with open_run(tracker, "sweep", {"suite": "lt"}) as sweep:
        with open_run(tracker, "fixed-seed0", config, parent=sweep) as run:
            tracker.log_metrics(run, {"loss": 4.1}, step=epoch)
            tracker.log_artifact(run, "tau.csv", artifact_dir="tau")
    print(ui_command(out))

A run started with a `key` is reused when a run with that key exists (a rerun or resumed sweep adds no second
parent). Names: per-epoch curves are `train/...` at step = epoch (1-based), final metrics `test/...` and `val/...`
(tempbench.eval's metric names), other numbers of the result row under their row names (`final_loss`), so nothing
collides and MLflow's charts, which put unprefixed keys last, open on `test`. The namespaced tags a researcher
filters on are copied to plain ones (`tempbench.dataset` -> `dataset`: `tags.dataset = "digits-lt"` needs no
backticks).

Interrupted runs: a run ended while Ctrl-C propagates is KILLED with the tag `interrupted=true`, and when a run
finishes, the earlier attempts of the same run (same `tempbench.run_id`) are closed: one left RUNNING by a killed
process becomes KILLED with `interrupted=true`, and each carries `superseded_by=<the finished run's id>`.

Tracking never raises into training: the first failure (server down, bad URI, locked database) warns once with a
`TrackingWarning` and turns that tracker into a no-op for the rest of the run (`tracking_failed` says so afterwards).
A local SQLite store is created and migrated under a file lock, so processes that start on one folder at once
leave one working store. mlflow is imported only inside `MlflowTracker`, so the training path imports without it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; start one process per folder there
    fcntl = None

T = TypeVar("T")

PARAM_VALUE_LIMIT = 6000  # characters; mlflow.utils.validation.MAX_PARAM_VAL_LENGTH in MLflow 3
PARENT_RUN_TAG = "mlflow.parentRunId"  # how MLflow marks a nested run
KEY_TAG = "tempbench.key"  # identifies a run that a rerun should reuse (a sweep's or a study's parent)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # MLflow 3: which UI an experiment opens in
RUN_ID_TAG = "tempbench.run_id"  # one training run (configuration and seed): its attempts share it
PLAIN_TAGS = ("strategy", "dataset", "seed", "suite")  # `tempbench.X` copied to `X`: filters without backticks
INTERRUPTED_TAG = "interrupted"  # "true" on a run that Ctrl-C, SIGTERM or a killed process ended
SUPERSEDED_TAG = "superseded_by"  # on an unfinished attempt: the id of the attempt that finished
_REMOTE_SCHEMES = ("http://", "https://", "databricks")
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")  # MLflow accepts these characters in param and metric names
_SWITCHED_OFF: set[str] = set()  # tracking URIs whose tracker failed in this process ("" for MLflow's default)


class TrackingWarning(UserWarning):
    """Tracking failed and was switched off for the rest of the run; training goes on."""


@dataclass(frozen=True)
class RunHandle:
    """A tracked run. `run_id` is None for runs that are not recorded (NullTracker, or tracking switched off)."""

    name: str
    run_id: str | None = None


class Tracker(Protocol):
    """What the runner and the sweeps log through. No method raises into training (see the module docstring)."""

    def start_run(self, name: str, params: Mapping[str, Any], *, parent: RunHandle | None = None,
                  tags: Mapping[str, str] | None = None, key: str | None = None) -> RunHandle:
        """Start a run named `name` recording `params` (nested dicts flattened to "a.b.c"), nested under `parent`,
        with `tags`; with a `key`, reopen the run that carries it instead of starting a second one."""
        ...

    def log_metrics(self, run: RunHandle, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record numbers at `step` (the epoch, 1-based, for per-epoch curves; None: 0)."""
        ...

    def log_artifact(self, run: RunHandle, path: str | Path, artifact_dir: str | None = None) -> None:
        """Copy the file at `path` into the run's artifacts (under `artifact_dir`)."""
        ...

    def end_run(self, run: RunHandle, status: str = "FINISHED") -> None:
        """Close the run with an MLflow status: FINISHED, FAILED or KILLED."""
        ...

    def set_tags(self, run: RunHandle, tags: Mapping[str, str]) -> None:
        """Add or overwrite tags of a started run (e.g. its result once known)."""
        ...


class NullTracker:
    """Records nothing and writes no files (tracking off)."""

    def start_run(self, name: str, params: Mapping[str, Any], *, parent: RunHandle | None = None,
                  tags: Mapping[str, str] | None = None, key: str | None = None) -> RunHandle:
        """A handle without a run id, so callers need no "is tracking on?" branches."""
        return RunHandle(name)

    def log_metrics(self, run: RunHandle, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Nothing (tracking is off)."""

    def log_artifact(self, run: RunHandle, path: str | Path, artifact_dir: str | None = None) -> None:
        """Nothing (tracking is off)."""

    def end_run(self, run: RunHandle, status: str = "FINISHED") -> None:
        """Nothing (tracking is off)."""

    def set_tags(self, run: RunHandle, tags: Mapping[str, str]) -> None:
        """Nothing (tracking is off)."""


class MlflowTracker:
    """Logs to an MLflow tracking store through `MlflowClient` (no global active-run state, so several trackers and
    worker processes never step on each other). Nested runs carry their parent's id in the `mlflow.parentRunId` tag.

    tracking_uri: None = MLflow's own default (`MLFLOW_TRACKING_URI`); `create_tracker` passes a local SQLite store.
    artifact_location: where artifacts of a newly created experiment go (local stores: `OUT/mlartifacts`).
    """

    def __init__(self, tracking_uri: str | None, experiment: str = "tempbench",
                 artifact_location: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.enabled = True
        self._client: Any = None
        self._experiment_id: str | None = None
        if tracking_uri and tracking_uri.startswith(_REMOTE_SCHEMES):
            # A dead server must cost seconds, not MLflow's default of minutes of retries; users may override.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        self._guarded(lambda: self._connect(experiment, artifact_location))

    def start_run(self, name: str, params: Mapping[str, Any], *, parent: RunHandle | None = None,
                  tags: Mapping[str, str] | None = None, key: str | None = None) -> RunHandle:
        """`Tracker.start_run`; the parent link is MLflow's `mlflow.parentRunId` tag, the key a `tempbench.key`
        tag. A handle without a run id once tracking is off."""
        run_id = self._guarded(lambda: self._reopen(key) or self._create_run(name, params, parent, tags, key))
        return RunHandle(name, run_id)

    def log_metrics(self, run: RunHandle, metrics: Mapping[str, float], step: int | None = None) -> None:
        """`Tracker.log_metrics`, in batches of MLflow's limit, names cleaned of characters MLflow rejects."""
        if run.run_id is not None:
            self._guarded(lambda: self._log_metrics(run.run_id, metrics, step))

    def log_artifact(self, run: RunHandle, path: str | Path, artifact_dir: str | None = None) -> None:
        """`Tracker.log_artifact` into the experiment's artifact location."""
        if run.run_id is not None:
            self._guarded(lambda: self._client.log_artifact(run.run_id, str(path), artifact_dir))

    def end_run(self, run: RunHandle, status: str = "FINISHED") -> None:
        """`Tracker.end_run`: MLflow's `set_terminated` with that status, except while Ctrl-C (a KeyboardInterrupt)
        propagates: then KILLED with `interrupted=true`, since callers end any run that raised as FAILED. A FINISHED
        run also closes the earlier attempts of the same run (`_close_earlier_attempts`)."""
        if run.run_id is None:
            return
        if interrupt_in_flight():
            self._guarded(lambda: self._interrupt(run.run_id))
        elif status == "FINISHED":
            self._guarded(lambda: self._finish(run.run_id))
        else:
            self._guarded(lambda: self._client.set_terminated(run.run_id, status))

    def set_tags(self, run: RunHandle, tags: Mapping[str, str]) -> None:
        """`Tracker.set_tags`, values stringified."""
        if run.run_id is not None:
            self._guarded(lambda: self._set_tags(run.run_id, tags))

    # ---- the MLflow calls, each run under `_guarded` ----------------------------------------------------------------
    def _connect(self, experiment: str, artifact_location: str | None) -> None:
        from mlflow import MlflowClient

        # store creation logs schema migrations at INFO on every new folder: noise in a benchmark's output
        for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
            logging.getLogger(name).setLevel(logging.WARNING)
        with store_lock(self.tracking_uri):  # the client creates and migrates a new store's schema
            client = MlflowClient(self.tracking_uri)
            found = client.get_experiment_by_name(experiment)
            if found is None:
                try:
                    # the kind tag opens MLflow 3's UI on the runs table ("model training"), not its GenAI traces
                    self._experiment_id = client.create_experiment(
                        experiment, artifact_location=artifact_location,
                        tags={EXPERIMENT_KIND_TAG: "custom_model_development"})
                except Exception:  # workers on one server race to create it: the loser uses the winner's
                    found = client.get_experiment_by_name(experiment)
                    if found is None:
                        raise
        if found is not None:
            self._experiment_id = found.experiment_id
        self._client = client

    def _reopen(self, key: str | None) -> str | None:
        """The id of this experiment's run tagged with `key`, set RUNNING again; None when there is none."""
        if key is None:
            return None
        found = self._client.search_runs([self._experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'",
                                         max_results=1)
        if not found:
            return None
        self._client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id

    def _create_run(self, name: str, params: Mapping[str, Any], parent: RunHandle | None,
                    tags: Mapping[str, str] | None, key: str | None) -> str:
        from mlflow.entities import Param

        all_tags = with_plain_tags({k: str(v) for k, v in (tags or {}).items()})
        if key is not None:
            all_tags[KEY_TAG] = key
        if parent is not None and parent.run_id is not None:
            all_tags[PARENT_RUN_TAG] = parent.run_id
        run_id = self._client.create_run(self._experiment_id, run_name=name, tags=all_tags).info.run_id
        flat = [Param(k, v) for k, v in flatten_params(params).items()]
        for chunk in _chunks(flat, 100):  # MLflow's limit of params per batch
            self._client.log_batch(run_id, params=chunk)
        return run_id

    def _set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        tags = with_plain_tags({k: str(v) for k, v in tags.items()})
        self._client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def _interrupt(self, run_id: str) -> None:
        self._client.set_tag(run_id, INTERRUPTED_TAG, "true")
        self._client.set_terminated(run_id, "KILLED")

    def _finish(self, run_id: str) -> None:
        """FINISHED; marks of an interruption dropped (a reopened suite run, or a run another process took for a
        leftover while it still trained); then the earlier attempts of the same run closed."""
        tags = self._client.get_run(run_id).data.tags
        for stale in (INTERRUPTED_TAG, SUPERSEDED_TAG):
            if stale in tags:
                self._client.delete_tag(run_id, stale)
        self._client.set_terminated(run_id, "FINISHED")
        if RUN_ID_TAG in tags:
            self._close_earlier_attempts(run_id, tags[RUN_ID_TAG])

    def _close_earlier_attempts(self, run_id: str, identity: str) -> None:
        """Every other unfinished run tagged with the same `tempbench.run_id` gets `superseded_by=run_id`; one still
        RUNNING, whose process was killed before it could close it, is ended KILLED with `interrupted=true`. A FAILED
        attempt keeps its status: its error is worth reading."""
        from mlflow.entities import RunTag

        others = self._client.search_runs([self._experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{identity}'")
        for other in others:
            if other.info.run_id == run_id or other.info.status == "FINISHED":
                continue
            tags = [RunTag(SUPERSEDED_TAG, run_id)]
            if other.info.status == "RUNNING":
                tags.append(RunTag(INTERRUPTED_TAG, "true"))
                self._client.set_terminated(other.info.run_id, "KILLED")
            self._client.log_batch(other.info.run_id, tags=tags)

    def _log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        entries = [Metric(clean_key(k), float(v), stamp, int(step or 0)) for k, v in metrics.items()]
        for chunk in _chunks(entries, 1000):  # MLflow's limit of metrics per batch
            self._client.log_batch(run_id, metrics=chunk)

    def _guarded(self, call: Callable[[], T]) -> T | None:
        """Run one MLflow call; on the first failure warn once and switch this tracker off for good."""
        if not self.enabled:
            return None
        try:
            return call()
        except Exception as exc:  # any failure of the tracking backend must not reach training
            self.enabled = False
            _SWITCHED_OFF.add(self.tracking_uri or "")
            warnings.warn(f"MLflow tracking to {self.tracking_uri or 'the default store'} failed "
                          f"({type(exc).__name__}: {exc}); tracking is off for the rest of this run",
                          TrackingWarning, stacklevel=3)
            return None


class NestedTracker:
    """A view of `tracker` whose runs are nested under `parent` and carry `tags` unless told otherwise, so code that
    starts its own run (the runner, one sweep trial) lands under the sweep's parent run without knowing about it."""

    def __init__(self, tracker: Tracker, parent: RunHandle | None, tags: Mapping[str, str] | None = None,
                 name_prefix: str = "") -> None:
        self.tracker = tracker
        self.parent = parent
        self.tags = dict(tags or {})
        self.name_prefix = name_prefix

    def start_run(self, name: str, params: Mapping[str, Any], *, parent: RunHandle | None = None,
                  tags: Mapping[str, str] | None = None, key: str | None = None) -> RunHandle:
        """A run under this view's parent (unless `parent` is given) with its tags added and its name prefixed."""
        name = f"{self.name_prefix}{name}" if self.name_prefix else name
        return self.tracker.start_run(name, params, parent=parent or self.parent, tags={**self.tags, **(tags or {})},
                                      key=key)

    def log_metrics(self, run: RunHandle, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Passed through to the wrapped tracker."""
        self.tracker.log_metrics(run, metrics, step)

    def log_artifact(self, run: RunHandle, path: str | Path, artifact_dir: str | None = None) -> None:
        """Passed through to the wrapped tracker."""
        self.tracker.log_artifact(run, path, artifact_dir)

    def end_run(self, run: RunHandle, status: str = "FINISHED") -> None:
        """Passed through to the wrapped tracker."""
        self.tracker.end_run(run, status)

    def set_tags(self, run: RunHandle, tags: Mapping[str, str]) -> None:
        """Passed through to the wrapped tracker."""
        self.tracker.set_tags(run, tags)


@contextmanager
def open_run(tracker: Tracker, name: str, params: Mapping[str, Any], *, parent: RunHandle | None = None,
             tags: Mapping[str, str] | None = None, key: str | None = None) -> Iterator[RunHandle]:
    """Start (or, with a `key`, reopen) a run and end it on exit: FINISHED, FAILED on an exception, KILLED on
    Ctrl-C (tagged `interrupted=true` by `MlflowTracker.end_run`)."""
    run = tracker.start_run(name, params, parent=parent, tags=tags, key=key)
    try:
        yield run
    except KeyboardInterrupt:
        tracker.end_run(run, "KILLED")
        raise
    except BaseException:
        tracker.end_run(run, "FAILED")
        raise
    tracker.end_run(run, "FINISHED")


def create_tracker(enabled: bool, tracking_uri: str | None, out_dir: Path,
                   experiment: str = "tempbench") -> Tracker:
    """NullTracker if not `enabled`; else an MlflowTracker on `tracking_uri`, or on a local SQLite store in `out_dir`
    (`out_dir/mlflow.db`, artifacts in `out_dir/mlartifacts`) when no URI is given."""
    if not enabled:
        return NullTracker()
    if tracking_uri:
        return MlflowTracker(tracking_uri, experiment)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return MlflowTracker(local_store_uri(out_dir), experiment,
                         artifact_location=(out_dir / "mlartifacts").resolve().as_uri())


def interrupt_in_flight() -> bool:
    """Whether the exception being handled right now is a KeyboardInterrupt (Ctrl-C, or SIGTERM where the command
    line turns it into one)."""
    return isinstance(sys.exc_info()[1], KeyboardInterrupt)


def with_plain_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """`tags` plus a plain copy of each namespaced tag in PLAIN_TAGS (`tempbench.dataset` -> `dataset`): MLflow's
    search needs backticks around a key with a dot, and a researcher types `tags.dataset = "digits-lt"`."""
    plain = {name: tags[f"tempbench.{name}"] for name in PLAIN_TAGS if f"tempbench.{name}" in tags}
    return {**tags, **plain}


def tracking_failed(tracking_uri: str | None) -> bool:
    """Whether a tracker on `tracking_uri` (None: MLflow's default store) failed in this process, so the runs
    after the failure are not there: a command points to its runs only when they went there."""
    return (tracking_uri or "") in _SWITCHED_OFF


def sqlite_path(tracking_uri: str | None) -> Path | None:
    """The database file of a `sqlite:///PATH` tracking URI (None for any other store, or an in-memory one)."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextmanager
def store_lock(tracking_uri: str | None) -> Iterator[None]:
    """Hold an exclusive lock on `<db>.lock` beside a SQLite store: two processes that open a fresh folder at once
    would otherwise both run MLflow's schema migration and leave the store half-migrated, tracking nothing ever
    after. Servers migrate their own store: no lock for them."""
    path = sqlite_path(tracking_uri)
    if path is None or fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f"{path.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        yield


def local_store_uri(out_dir: Path) -> str:
    """The SQLite tracking URI of the local store in `out_dir` (MLflow 3 steers away from the plain file store)."""
    return f"sqlite:///{(Path(out_dir) / 'mlflow.db').resolve()}"


def ui_command(out_dir: Path) -> str:
    """The shell command that opens the MLflow UI on the local store in `out_dir`."""
    return f"mlflow ui --backend-store-uri {shlex.quote(local_store_uri(out_dir))}"


def flatten_params(params: Mapping[str, Any] | Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts (and dataclasses) -> {"a.b.c": "value"}; values stringified and cut to MLflow's length limit;
    None values are left out (a param says what was used, and "None" says nothing)."""
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        params = dataclasses.asdict(params)
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
            flat.update(flatten_params(value, prefix=f"{name}."))
        elif value is not None:
            flat[clean_key(name)] = _truncate(str(value))
    return flat


def clean_key(key: str) -> str:
    """`key` with the characters MLflow rejects in names replaced by `_`."""
    return _BAD_KEY_CHARS.sub("_", str(key))


def _truncate(text: str) -> str:
    if len(text) <= PARAM_VALUE_LIMIT:
        return text
    return text[: PARAM_VALUE_LIMIT - 3] + "..."


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
