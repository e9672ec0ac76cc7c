"""Recovery in every worker: one pass when it starts, then one periodically.

Between passes the loop asks the broker every few seconds whether it lost
its messages (``broker.broker_emptied``): then a pass runs at once and
publishes every QUEUED node again, without waiting for them to be overdue.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from celeriac.engine.broker import broker_emptied
from celeriac.errors import CorruptRecord

if TYPE_CHECKING:
    from celeriac.engine.engine import Engine

logger = logging.getLogger("celeriac.recovery")

#: Seconds between two checks of the broker's marker: work resumes within
#: about this long of an emptied broker answering again.
BROKER_CHECK_INTERVAL = 2.0


class RecoveryLoop:
    """Runs ``engine.recover()`` every ``interval`` seconds in a daemon thread.

    Several workers run it at once: each pass claims what is stale in
    batches that no other pass takes, and a second publish of a node is
    dropped when it is claimed.
    """

    def __init__(self, engine: Engine, interval: float) -> None:
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: workflows whose corrupted rows stopped a pass, logged once each
        self._unreadable: set[str] = set()

    def start(self) -> None:
        """Start the loop (once); the first pass runs at once."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="celeriac-recovery", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop, and wait for the pass in progress, if any."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        last_pass: float | None = None
        while not self._stop.is_set():
            try:
                emptied = broker_emptied(self.engine.app)
                due = last_pass is None or (
                    time.monotonic() - last_pass >= self.interval
                )
                if emptied or due:
                    last_pass = time.monotonic()
                    self.engine.recover(broker_emptied=emptied)
            except CorruptRecord as exc:  # one line, once: it stays corrupt
                if exc.workflow_id not in self._unreadable:
                    self._unreadable.add(exc.workflow_id)
                    logger.error("recovery pass stopped: %s", exc)
            except Exception:  # the next pass tries again
                logger.warning("recovery pass failed", exc_info=True)
            self._stop.wait(min(self.interval, BROKER_CHECK_INTERVAL))
