"""Real ``celery worker`` OS processes (prefork pool), started and stopped on demand.

Used by the worker-process tests and by the benchmarks: each worker is
``python -m celery -A MODULE worker`` in a process group of its own, logging
to a file of its own, with the environment it is given (the app module reads
its broker, queue and database from there).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
#: Seconds a worker gets to answer a ping after its process started.
START_TIMEOUT = 60.0
#: Seconds a worker gets to finish its tasks after SIGTERM, before SIGKILL.
STOP_TIMEOUT = 20.0
LOG_TAIL = 60
#: Engine options for crash tests: recovery within about a second of a crash.
QUICK_RECOVERY = {
    "recovery_delay": 1,
    "recovery_interval": 0.5,
    "heartbeat_interval": 0.5,
    "worker_timeout": 3,
}


class Workers:
    """``celery worker`` processes of one app module, and their logs.

    Args:
        app: The Celery app (as imported here) whose control pings the workers.
        env: The environment of every worker process.
        logs: The directory of the workers' log files.
        module: What ``celery -A`` imports in the workers.
        prefix: Workers are named ``<prefix>1@host``, ``<prefix>2@host``, …;
            their logs ``<prefix>1.log``, …
        concurrency: Pool processes per worker.
        loglevel: The workers' ``--loglevel``.
    """

    def __init__(
        self,
        app: Any,
        env: dict[str, str],
        logs: Path,
        module: str = "tests.proc_app",
        prefix: str = "w",
        concurrency: int = 2,
        loglevel: str = "INFO",
    ) -> None:
        self.app = app
        self.env = env
        self.logs = logs
        self.module = module
        self.prefix = prefix
        self.concurrency = concurrency
        self.loglevel = loglevel
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started = 0

    def start(self, count: int, **env: str) -> list[str]:
        """Start ``count`` more workers; return their names once all answer.

        ``env``: more environment variables for these workers only.
        """
        names = []
        for _ in range(count):
            self.started += 1
            name = f"{self.prefix}{self.started}@{socket.gethostname()}"
            self.processes[name] = self._spawn(name, {**self.env, **env})
            names.append(name)
        wait_for(
            lambda: self._answering() >= set(names),
            timeout=START_TIMEOUT,
            interval=0.2,
            what=f"workers {names} to answer a ping\n{self.tails()}",
        )
        return names

    def _spawn(self, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "celery", "-A", self.module, "worker"]
        command += ["--pool", "prefork", "--concurrency", str(self.concurrency)]
        command += ["-n", name, "--without-gossip", "--without-mingle"]
        command += ["--loglevel", self.loglevel]
        with self.log_path(name).open("ab") as log:
            return subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # a group of its own: the pool's children go with it on SIGKILL
                start_new_session=True,
            )

    def log_path(self, name: str) -> Path:
        """The log file of worker ``name``."""
        return self.logs / f"{name.partition('@')[0]}.log"

    def _answering(self) -> set[str]:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(
                    f"worker {name} exited with code {process.returncode}\n"
                    + self.tails()
                )
        replies = self.app.control.ping(timeout=0.5)
        return {name for reply in replies for name in reply}

    def stop(self) -> None:
        """SIGTERM (warm shutdown) to all, then SIGKILL to the stragglers' groups."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            # the whole group: a pool child its parent left behind goes too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.processes.clear()

    def kill(self, name: str) -> None:
        """SIGKILL a worker and its pool: as if its machine died."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def tails(self) -> str:
        """The last lines of every worker's log."""
        parts = []
        for path in sorted(self.logs.glob(f"{self.prefix}*.log")):
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL:]
            parts.append(f"--- last lines of {path} ---\n" + "\n".join(lines))
        return "\n".join(parts)
