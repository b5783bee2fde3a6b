"""Following the log in this process: one library projection runner per projection,
restarted when its live generation changes or it fails."""

from __future__ import annotations

import logging
import threading

from application.ledger import DecisionLedger
from application.projections.runtime import Projections
from infrastructure.eventsourcing_compat import BatchingProjectionRunner

log = logging.getLogger(__name__)


class ProjectionWorker:
    """Follows the log with the library's projection runners, one per projection, and
    restarts a runner when its live generation changes or it fails."""

    def __init__(self, projections: Projections, env: dict[str, str], *, check_interval: float = 0.5):
        self.projections = projections
        self.env = env
        self.check_interval = check_interval
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
                    continue
                if runner.is_interrupted.is_set():
                    log.warning("projection %s stopped; restarting it", name)
                self._stop_runner(name)
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

    def _stop_runner(self, name: str) -> None:
        _, runner = self._runners.pop(name)
        try:
            runner.__exit__(None, None, None)
        except Exception:
            log.exception("projection %s failed", name)
