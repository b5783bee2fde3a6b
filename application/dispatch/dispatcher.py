"""The dispatcher: carries out the actions an effector receives, at least once, and
records every attempt on the Action.

It reads what is due from the outbox projection (which follows the log with tracking,
so nothing requested is missed across restarts), and for each due action:

1. claims the next attempt by saving DeliveryStarted at the next version; a dispatcher
   that loses that save (another one claimed it) does not send;
2. posts the webhook (same `webhook-id` and body bytes on every attempt);
3. records the outcome: the commit, a DeliveryFailed with the next attempt's time, or
   the failure that ends the schedule (dead letter) or stops it (410).

Sends run on one event loop, at most `concurrency` at a time, over one pooled client;
the ledger's blocking reads and saves run in threads beside it.

One dispatcher delivers at a time across every process on the database: each stands for
the follower "dispatcher" (application/election.py); the others stand by and take over
when it dies. The claims above stay the second line of defence (a deposed leader's
attempt in flight, two leaders for a moment).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.dispatch.messages import action_message
from application.dispatch.metrics import DispatchMetrics
from application.dispatch.schedule import STUCK_GRACE_S, due_at, retry_at
from application.election import Candidacy
from application.ledger import DecisionLedger
from application.projections.outbox import due_actions
from application.projections.runtime import Projections
from domain.action import Action
from domain.errors import LedgerError
from infrastructure.effectors import Effector, Effectors
from infrastructure.webhook_sender import AttemptOutcome, WebhookSender

log = logging.getLogger(__name__)

#: How often the outbox is read when nothing woke the dispatcher earlier (seconds).
POLL_INTERVAL_S = 0.05
#: How often an outcome is saved again after losing a race with another writer.
MAX_RECORD_TRIES = 20
#: How long an action this process settled is not looked at again (the outbox lags a little).
SETTLED_MEMORY = timedelta(seconds=30)
#: The follower the dispatchers of every process stand for: one of them delivers.
DISPATCHER_FOLLOWER = "dispatcher"
#: How often a dispatcher checks that it still leads (or, standing by, whether it may stand).
LEADERSHIP_CHECK_S = 0.5


@dataclass(frozen=True)
class Claim:
    action_id: UUID
    attempt: int
    effector: Effector
    body: bytes
    #: Whether the claim presumes an earlier attempt lost (it had no outcome by its timeout).
    lost_attempt: bool


class Dispatcher:
    def __init__(
        self,
        ledger: DecisionLedger,
        projections: Projections,
        effectors: Effectors,
        *,
        concurrency: int = 16,
        metrics: DispatchMetrics | None = None,
        poll_interval_s: float = POLL_INTERVAL_S,
        rng: random.Random | None = None,
        candidacy: Candidacy | None = None,
    ) -> None:
        """Without a `candidacy` it delivers as long as it runs (one process on the database)."""
        self.ledger = ledger
        self.projections = projections
        self.effectors = effectors
        self.concurrency = concurrency
        self.metrics = metrics or DispatchMetrics()
        self.poll_interval_s = poll_interval_s
        self._rng = rng or random.Random()
        self._threads = ThreadPoolExecutor(concurrency + 2, thread_name_prefix="dispatch")
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_flight: set[UUID] = set()
        # Actions looked at or settled here, and when they are next due: the outbox may not show it yet.
        self._settled: dict[UUID, tuple[int, datetime]] = {}
        self.candidacy = candidacy
        self._leading = candidacy is None
        self._next_leadership_check = 0.0
        self.metrics.track_lag(self.lag)

    # --- Running ------------------------------------------------------------------------

    def start(self) -> None:
        """Dispatch in a thread of this process (what `serve` does)."""
        self._thread = threading.Thread(target=self.run_forever, name="dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self._threads.shutdown(wait=True)
        if self.candidacy is not None:
            self._leading = False
            self.candidacy.resign()  # a standby takes over at its next poll

    def run_forever(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        sender = WebhookSender(max_connections=self.concurrency)
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping.is_set():
                if not await self._leads():
                    await asyncio.sleep(self.poll_interval_s)
                    continue
                try:
                    due = await self._blocking(self.due_now, self.concurrency * 4)
                except Exception as error:  # the database may be briefly away: try again
                    log.exception("the dispatcher could not read the outbox")
                    await self._report_error(f"could not read the outbox: {type(error).__name__}: {error}")
                    due = []
                now = datetime.now(UTC)
                started = 0
                for action_id, row_position in due:
                    if action_id in self._in_flight or self._stale(action_id, row_position, now):
                        continue
                    await slots.acquire()
                    self._in_flight.add(action_id)
                    task = asyncio.create_task(self._deliver_in_slot(action_id, sender, slots))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    started += 1
                # A full page may hold more due actions; otherwise wait for the outbox to move.
                if started == 0 or len(due) < self.concurrency * 4:
                    await asyncio.sleep(self.poll_interval_s)
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await sender.aclose()

    @property
    def leading(self) -> bool:
        """Whether this dispatcher delivers now (as of its last check)."""
        return self._leading

    async def _leads(self) -> bool:
        """Checked at most every LEADERSHIP_CHECK_S; a standby stands at its candidacy's poll."""
        if self.candidacy is None:
            return True
        now = time.monotonic()
        if now >= self._next_leadership_check:
            self._next_leadership_check = now + LEADERSHIP_CHECK_S
            try:
                self._leading = await self._blocking(self.candidacy.leading)
            except Exception:  # stand by until the next check
                log.exception("the dispatcher could not check its lead")
                self._leading = False
        return self._leading

    async def _report_error(self, error: str) -> None:
        if self.candidacy is not None:
            await self._blocking(self.candidacy.report_error, error)

    async def _blocking(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._threads, function, *args)

    async def _deliver_in_slot(
        self, action_id: UUID, sender: WebhookSender, slots: asyncio.Semaphore
    ) -> None:
        try:
            await self.deliver(action_id, sender)
        except Exception:
            log.exception("delivering action %s failed; it stays in the outbox", action_id)
        finally:
            self._in_flight.discard(action_id)
            slots.release()

    def lag(self) -> tuple[int, float]:
        """(positions, seconds) the outbox is behind the head of the log."""
        try:
            position = self.projections.live_store("outbox").position()
            behind = self.ledger.index.count_after(position)
            if not behind:
                return 0, 0.0
            oldest = self.ledger.index.events_between(position, None, 1)
            seconds = (datetime.now(UTC) - oldest[0].recorded_at).total_seconds() if oldest else 0.0
            return behind, max(seconds, 0.0)
        except Exception:  # a scrape must not fail because the database is away
            log.exception("could not measure the dispatch lag")
            return -1, -1.0

    # --- One action -----------------------------------------------------------------------

    def due_now(self, limit: int) -> list[tuple[UUID, int]]:
        """Actions whose next attempt is due, per effector, from the outbox."""
        store = self.projections.live_store("outbox")
        queue = self.projections.live_tables("outbox")["queue"]
        now = datetime.now(UTC)
        due: list[tuple[UUID, int]] = []
        for effector in self.effectors.all:
            due += [
                (UUID(action_id), row_position)
                for action_id, row_position in due_actions(
                    store,
                    queue,
                    sorted(effector.kinds),
                    now,
                    first_wait_s=effector.retry_schedule_s[0],
                    in_flight_timeout_s=effector.timeout_s + STUCK_GRACE_S,
                    limit=limit,
                )
            ]
        return due

    async def deliver(self, action_id: UUID, sender: WebhookSender) -> AttemptOutcome | None:
        """Claim, send and record one attempt of an action, if one is due."""
        claim = await self._blocking(self.prepare_claim, action_id)
        if claim is None:
            return None
        action, claim = claim
        try:
            await self._save(action)
        except IntegrityError:
            self.metrics.claims_lost.inc()  # another dispatcher claimed it: not sent here
            return None
        if claim.lost_attempt:
            self.metrics.observe_outcome(claim.effector.name, "lost", None)
        outcome = await sender.send(claim.effector, str(claim.action_id), claim.body)
        # The claimed aggregate is the latest version unless someone wrote since: try it first.
        try:
            kind = self._decide(action, claim, outcome)
            position: int | None = await self._save(action)
        except (IntegrityError, LedgerError):
            kind, position = await self._blocking(self.record, claim, outcome)
        if position is not None:
            self._remember_settled(claim.action_id, position, action.next_delivery_at)
        self.metrics.observe_outcome(claim.effector.name, kind, outcome.latency_ms)
        return outcome

    async def _save(self, action: Action) -> int:
        """Through the group committer when there is one (concurrent saves share a
        transaction); returns the position of the last event saved."""
        committer = self.ledger.committer
        if committer is not None:
            recordings = await committer.save_async(action)
        else:
            recordings = await self._blocking(self.ledger.save, action)
        return int(recordings[-1].notification.id)

    def prepare_claim(self, action_id: UUID) -> tuple[Action, Claim] | None:
        """The action with its next DeliveryStarted triggered (not saved), if one is due."""
        try:
            action: object = self.ledger.repository.get(action_id)
        except AggregateNotFoundError:
            return None
        if not isinstance(action, Action):
            return None
        effector = self.effectors.for_kind(action.kind)
        now = datetime.now(UTC)
        due = None if effector is None else due_at(action, effector)
        if effector is None or due is None or due > now:
            return None
        lost = action.delivery_in_flight is not None
        attempt = action.start_delivery(effector.name, now)
        return action, Claim(action.id, attempt, effector, action_message(action), lost)

    def record(self, claim: Claim, outcome: AttemptOutcome) -> tuple[str, int | None]:
        """Record what the attempt came to, from a fresh load; a lost race loads again."""
        for _ in range(MAX_RECORD_TRIES):
            action = cast(Action, self.ledger.repository.get(claim.action_id))
            try:
                kind = self._decide(action, claim, outcome)
            except LedgerError:
                # The attempt is no longer in flight: presumed lost by another dispatcher,
                # or the action was settled meanwhile. Its outcome is not ours to record.
                return "superseded", None
            try:
                recordings = self.ledger.save(action)
            except IntegrityError:
                continue
            return kind, int(recordings[-1].notification.id)
        raise RuntimeError(f"could not record attempt {claim.attempt} of action {claim.action_id}")

    def _remember_settled(self, action_id: UUID, position: int, next_at: datetime | None) -> None:
        """Until the outbox shows this outcome (saved at `position`), an outbox row from
        before it is stale: skip it until the action is next due (settled: for a while)."""
        if len(self._settled) > 100_000:
            self._settled.clear()
        self._settled[action_id] = (position, next_at or datetime.now(UTC) + SETTLED_MEMORY)

    def _stale(self, action_id: UUID, row_position: int, now: datetime) -> bool:
        remembered = self._settled.get(action_id)
        return remembered is not None and row_position <= remembered[0] and remembered[1] > now

    def _decide(self, action: Action, claim: Claim, outcome: AttemptOutcome) -> str:
        if outcome.delivered:
            assert outcome.status_code is not None
            action.record_delivered(
                claim.attempt, outcome.status_code, outcome.latency_ms, outcome.external_ref
            )
            return "delivered"
        next_at = None
        if outcome.retryable:
            # The in-flight attempt counts: it is the one that just failed.
            next_at = retry_at(
                claim.effector,
                action.deliveries_in_schedule,
                datetime.now(UTC),
                outcome.retry_after_s,
                self._rng,
            )
        action.record_delivery_failed(
            claim.attempt,
            outcome.status_code,
            outcome.error or "failed",
            outcome.latency_ms,
            retryable=outcome.retryable,
            next_delivery_at=next_at,
        )
        if not outcome.retryable:
            return "gone"
        return "failed" if next_at is not None else "dead_lettered"
