"""Fixtures of the scale-out tests: a PostgreSQL server for the session, MLflow servers on demand, and a way to
start `tempbench` worker processes whose training is faked (`fake_worker.py`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .servers import Postgres, postgres_bin, running_mlflow, running_postgres

FAKE_WORKER = Path(__file__).with_name("fake_worker.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Server tests take minutes: they run when asked for (`-m servers`, as CI does), not with the README's
    default `-m "not slow and not gpu"`."""
    if "servers" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="starts servers and worker processes: run with -m servers")
    for item in items:
        if "servers" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """PostgreSQL on 127.0.0.1 with a throwaway data folder, for the whole session. The folder is made directly
    under the temp dir: pytest's own (mode 700, root's) is closed to the `postgres` user."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install -y postgresql)")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install 'tempbench[servers]'")
    root = Path(tempfile.mkdtemp(prefix="tempbench-postgres-"))
    try:
        with running_postgres(root) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def mlflow_server(postgres: Postgres, tmp_path: Path):
    """A factory: `with mlflow_server("name") as server:` runs `mlflow server` on its own PostgreSQL database."""
    return lambda name: running_mlflow(postgres, tmp_path, name)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `tempbench ARGS` with fake training as a process of its own (stdout and stderr in files named after
    it); every process still running at the end is killed by its PID."""
    processes: list[subprocess.Popen] = []

    def start(name: str, *args: str, seconds: float = 1.0) -> subprocess.Popen:
        env = {**os.environ, "FAKE_TRIAL_SECONDS": str(seconds), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        with open(tmp_path / f"{name}.out", "wb") as out, open(tmp_path / f"{name}.err", "wb") as err:
            process = subprocess.Popen([sys.executable, str(FAKE_WORKER), *args], env=env, stdout=out, stderr=err)
        process.name = name
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
