"""Real servers for the scale-out tests, on 127.0.0.1 with throwaway data: PostgreSQL from the Debian package
(`initdb` + `postgres`, run as the `postgres` user when the tests run as root) and `mlflow server` on a PostgreSQL
database with a local artifact folder. Each server is a child process of the test session, stopped by its own
PID. Nothing is mocked."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server binaries (Debian: /usr/lib/postgresql/VERSION/bin), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _as_server_user() -> dict:
    """PostgreSQL refuses to run as root: as root, run it as the Debian package's `postgres` user."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


@dataclass
class Postgres:
    bin: Path
    port: int
    process: subprocess.Popen

    def database(self, name: str) -> str:
        """A new, empty database; its URL (`postgresql://`, the form users write: tempbench names the driver)."""
        subprocess.run([str(self.bin / "createdb"), "-h", HOST, "-p", str(self.port), "-U", "bench", name],
                       check=True, capture_output=True, **_as_server_user())
        return f"postgresql://bench@{HOST}:{self.port}/{name}"


@contextlib.contextmanager
def running_postgres(root: Path) -> Iterator[Postgres]:
    """initdb a data folder under `root`, start `postgres` on a free port, yield it; stop it (SIGINT: fast
    shutdown) by its PID on the way out, also after a failure."""
    bin_dir = postgres_bin()
    assert bin_dir is not None
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "bench", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True, **_as_server_user())
    port = free_port()
    with open(root / "postgres.log", "wb") as log:
        process = subprocess.Popen([str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h", HOST,
                                    "-k", str(root), "-c", "fsync=off", "-c", "max_connections=200"],
                                   stdout=log, stderr=subprocess.STDOUT, **_as_server_user())
    try:
        _wait_until(lambda: subprocess.run([str(bin_dir / "pg_isready"), "-h", HOST, "-p", str(port)],
                                           capture_output=True).returncode == 0, 30, "PostgreSQL", root)
        yield Postgres(bin_dir, port, process)
    finally:
        stop(process, signal.SIGINT)


@dataclass
class MlflowServer:
    url: str
    process: subprocess.Popen
    backend: str


@contextlib.contextmanager
def running_mlflow(postgres: Postgres, root: Path, name: str) -> Iterator[MlflowServer]:
    """`mlflow server` on a fresh PostgreSQL database and a local artifact folder; stopped by its PID."""
    backend = postgres.database(name).replace("postgresql://", "postgresql+psycopg://")
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(port), "--workers", "1",
               "--backend-store-uri", backend, "--artifacts-destination", str(root / "artifacts")]
    with open(root / f"{name}.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = MlflowServer(f"http://{HOST}:{port}", process, backend)
    try:
        _wait_until(lambda: _healthy(server.url), 120, "mlflow server", root)
        yield server
    finally:
        stop(process, signal.SIGTERM, group=True)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _wait_until(ready, seconds: float, what: str, root: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in root.glob("*.log"))
    raise RuntimeError(f"{what} did not come up within {seconds} s; logs:\n{logs}")


def stop(process: subprocess.Popen, sig: int, group: bool = False) -> None:
    """Signal the server (its process group with `group`: mlflow's web workers are its children), wait, kill if
    it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig) if group else process.send_signal(sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL) if group else process.kill()
        process.wait(timeout=10)
