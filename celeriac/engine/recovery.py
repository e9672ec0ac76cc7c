"""Recovery in every worker: one pass when it starts, then one periodically."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celeriac.engine.engine import Engine

logger = logging.getLogger("celeriac.recovery")


class RecoveryLoop:
    """Runs ``engine.recover()`` every ``interval`` seconds in a daemon thread.

    Several workers run it at once: each pass only republishes what is
    stale, and a second publish of a node is dropped when it is claimed.
    """

    def __init__(self, engine: Engine, interval: float) -> None:
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
        while not self._stop.is_set():
            try:
                self.engine.recover()
            except Exception:  # the next pass tries again
                logger.warning("recovery pass failed", exc_info=True)
            self._stop.wait(self.interval)
