"""Following the log in this process: one library projection runner per projection,
restarted when its live generation changes or it fails."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from application.ledger import DecisionLedger
from application.projections.runtime import ProjectionFailure, Projections
from infrastructure.eventsourcing_compat import BatchingProjectionRunner

log = logging.getLogger(__name__)


class ProjectionWorker:
    """Follows the log with the library's projection runners, one per projection, and
    restarts a runner when its live generation changes or it fails."""

    #: Longest pause before a failed projection is tried again (seconds).
    MAX_RETRY_DELAY = 30.0

    def __init__(
        self,
        projections: Projections,
        env: dict[str, str],
        *,
        check_interval: float = 0.5,
        on_failure: Callable[[ProjectionFailure], None] | None = None,
    ):
        self.projections = projections
        self.env = env
        self.check_interval = check_interval
        self.on_failure = on_failure
        self._retry_at: dict[str, float] = {}
        self._runners: dict[str, tuple[int, BatchingProjectionRunner]] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="projection-worker", daemon=True)

    def start(self) -> None:
        self._ensure_runners()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        for name in list(self._runners):
            self._stop_runner(name)

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stopping.wait(1.0):
                pass
        finally:
            self.stop()

    def _supervise(self) -> None:
        while not self._stopping.wait(self.check_interval):
            try:
                self._ensure_runners()
            except Exception:  # keep supervising; the next round retries
                log.exception("projection worker could not check its runners")

    def _ensure_runners(self) -> None:
        for name in self.projections.names:
            generation = self.projections.live_generation(name, fresh=True)
            current = self._runners.get(name)
            if current is not None:
                running_generation, runner = current
                if running_generation == generation and not runner.is_interrupted.is_set():
                    self.projections.clear_failure_if_moved_on(name)
                    continue
                if runner.is_interrupted.is_set():
                    self._note_failure(name, runner)
                self._stop_runner(name)
            if time.monotonic() < self._retry_at.get(name, 0.0):
                continue
            store = self.projections.store(name, generation)
            projection = self.projections.kind(name).build(store, self.projections.app)
            runner = BatchingProjectionRunner(
                projection=projection,
                application_class=DecisionLedger,
                tracking_recorder=store,
                topics=(),
                env=self.env,
            )
            runner.__enter__()
            self._runners[name] = (generation, runner)

    def _note_failure(self, name: str, runner: BatchingProjectionRunner) -> None:
        """Keep the failure visible, and try again later, each time a little later."""
        try:
            runner.run_forever(timeout=0)
            return  # stopped without an error
        except Exception as error:
            failure = self.projections.record_failure(name, error)
        log.error("%s (failure %d)", failure.describe(), failure.failures)
        delay = min(self.check_interval * 2**failure.failures, self.MAX_RETRY_DELAY)
        self._retry_at[name] = time.monotonic() + delay
        if self.on_failure is not None:
            self.on_failure(failure)

    def _stop_runner(self, name: str) -> None:
        _, runner = self._runners.pop(name)
        try:
            runner.__exit__(None, None, None)
        except Exception:
            log.exception("projection %s failed", name)
