"""Worker leases: each process that runs nodes heartbeats in the database.

An attempt belongs to the process that claimed it. While that process lives
it renews one row every ``heartbeat_interval`` seconds; an attempt whose
process fell silent for ``worker_timeout`` seconds is lost, and recovery (or
the broker's redelivery of its message) runs the node again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta

from celeriac.records import Lease
from celeriac.storage import Store
from celeriac.storage.rows import now

logger = logging.getLogger("celeriac.worker")


class Liveness:
    """This process's worker id, kept alive by a daemon thread."""

    def __init__(
        self, store: Store, heartbeat_interval: float, worker_timeout: float
    ) -> None:
        self.store = store
        self.interval = heartbeat_interval
        self.timeout = worker_timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pid = 0
        self._worker_id = ""
        self._thread: threading.Thread | None = None
        #: (node id, attempt number) this process gave up but could not yet
        #: release in the database
        self._abandoned: set[tuple[str, str, int]] = set()

    def stop(self) -> None:
        """Stop heartbeating (the engine is closing), after the beat in progress."""
        self._stop.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            thread.join()

    def lease(self, hostname: str | None) -> Lease:
        """This process's lease, starting its heartbeat on first use (per pid)."""
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked pool child
                self._pid = os.getpid()
                self._worker_id = (
                    f"{socket.gethostname()}-{self._pid}-{uuid.uuid4().hex[:8]}"
                )
                self.store.heartbeat(self._worker_id, hostname, self._pid)
                self._thread = threading.Thread(
                    target=self._beat,
                    args=(self._worker_id, hostname, self._pid),
                    name="celeriac-heartbeat",
                    daemon=True,
                )
                self._thread.start()
            worker_id = self._worker_id
        return Lease(worker_id, hostname, os.getpid(), self.dead_before())

    def release(self, workflow_id: str, node_id: str, number: int) -> None:
        """Give up attempt ``number`` of ``node_id``, which this process runs.

        For an attempt whose outcome could not be recorded. The heartbeat
        thread releases it in the database before its next beat, and does
        not beat while it cannot: either way, no live lease covers the
        attempt for long, and recovery runs the node again.
        """
        with self._lock:
            self._abandoned.add((workflow_id, node_id, number))

    def _release_abandoned(self) -> bool:
        """Release the attempts given up so far; False if one is still held."""
        with self._lock:
            abandoned = sorted(self._abandoned)
        for workflow_id, node_id, number in abandoned:
            try:
                self.store.release_attempt(workflow_id, node_id, number)
            except Exception:  # the next beat tries again; no beat meanwhile
                logger.warning(
                    "cannot release attempt %d of node %s yet", number, node_id
                )
                return False
            logger.warning(
                "attempt %d of node %s released: recovery runs it again",
                number,
                node_id,
            )
            with self._lock:
                self._abandoned.discard((workflow_id, node_id, number))
        return True

    def dead_before(self) -> datetime:
        """Workers whose last heartbeat is older than this are dead."""
        return now() - timedelta(seconds=self.timeout)

    def _beat(self, worker_id: str, hostname: str | None, pid: int) -> None:
        while not self._stop.wait(self.interval):
            if os.getpid() != pid:
                return
            try:
                if self._release_abandoned():
                    self.store.heartbeat(worker_id, hostname, pid)
            except (
                Exception
            ):  # the next beat tries again; a long outage loses the lease
                logger.warning("heartbeat of %s failed", worker_id, exc_info=True)
