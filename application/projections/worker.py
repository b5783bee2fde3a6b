"""Following the log: one library projection runner per projection this process leads.

Every process stands for every projection (the followers "projection:<name>"); the
election lets one lead each across all processes on the database. The leader's runner
writes through a fence, so a process that lost the lead cannot commit after a new leader
took over. Runners are restarted when their live generation changes or they fail (after
a pause that grows with each failure).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from application.election import Candidacy, LeaderElection
from application.ledger import DecisionLedger
from application.projections.runtime import ProjectionFailure, Projections
from infrastructure.eventsourcing_compat import BatchingProjectionRunner

log = logging.getLogger(__name__)

#: A runner's own application only subscribes to the log: one connection listens for new
#: events, one fetches them (the views are written through the service's pool).
RUNNER_POOL = {"POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "1"}


def follower_name(projection: str) -> str:
    return f"projection:{projection}"


class ProjectionWorker:
    """Stands for every projection, and runs those it leads with the library's runners."""

    #: Longest pause before a failed projection is tried again (seconds).
    MAX_RETRY_DELAY = 30.0

    def __init__(
        self,
        projections: Projections,
        env: dict[str, str],
        election: LeaderElection,
        *,
        poll_s: float = 2.0,
        check_interval: float = 0.5,
        on_failure: Callable[[ProjectionFailure], None] | None = None,
    ):
        self.projections = projections
        self.env = {**env, **RUNNER_POOL}
        self.check_interval = check_interval
        self.on_failure = on_failure
        self.candidacies = {
            name: Candidacy(election, follower_name(name), poll_s=poll_s) for name in projections.names
        }
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
        for candidacy in self.candidacies.values():
            candidacy.resign()

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stopping.wait(1.0):
                pass
        finally:
            self.stop()

    def leading(self) -> dict[str, bool]:
        """Which followers this process leads now, by follower name."""
        return {
            candidacy.name: candidacy.leadership is not None and name in self._runners
            for name, candidacy in self.candidacies.items()
        }

    def _supervise(self) -> None:
        while not self._stopping.wait(self.check_interval):
            try:
                self._ensure_runners()
            except Exception:  # keep supervising; the next round retries
                log.exception("projection worker could not check its runners")

    def _ensure_runners(self) -> None:
        for name, candidacy in self.candidacies.items():
            if not candidacy.leading():
                if name in self._runners:
                    log.warning("projection %s: no longer the leader; stopping its runner", name)
                    self._stop_runner(name)
                continue
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
            self._start_runner(name, generation, candidacy)

    def _start_runner(self, name: str, generation: int, candidacy: Candidacy) -> None:
        leadership = candidacy.leadership
        assert leadership is not None
        store = self.projections.store(name, generation)
        projection = self.projections.kind(name).build(store, self.projections.app)
        projection.fence = leadership.fence()
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
        """Keep the failure visible (to every process: the election records it), and try
        again later, each time a little later."""
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
        self.candidacies[name].report_error(failure.error)

    def _stop_runner(self, name: str) -> None:
        _, runner = self._runners.pop(name)
        try:
            runner.__exit__(None, None, None)
        except Exception as error:  # noted already when it stopped the runner
            log.info("projection %s stopped: %s: %s", name, type(error).__name__, error)
