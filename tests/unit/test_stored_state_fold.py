"""The runs projection folds each event's stored state, parsed, not a domain event
(application/projections/run_views.py): what it reads of a state must be what the
library's mapper would have decoded."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import DatetimeAsISO
from eventsourcing.utils import get_topic, register_topic
from hypothesis import given
from hypothesis import strategies as st

from application.ledger import DecisionLedger
from application.projections.base import stored_utc_text, utc_text
from application.projections.run_views import RunViewsProjection
from application.stored_form import StoredFormRefused
from domain.action import Action
from domain.decision import Decision
from infrastructure.database import parse_database_url


class TablesOnly:
    """A view store as far as the projection's constructor uses one."""

    projection = "runs"
    generation = 1

    def tables(self, names: Iterable[str]) -> dict[str, str]:
        return {name: name for name in names}

    def create_tables(self, ddl: Iterable[str], names: dict[str, str]) -> None:
        pass


def runs_view() -> RunViewsProjection:
    return RunViewsProjection(TablesOnly(), None)  # type: ignore[arg-type]


@given(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9998, 1, 1)),
    st.integers(-23 * 60, 23 * 60),
    st.booleans(),
)
def test_a_stored_datetime_reads_as_the_views_utc_text_of_the_datetime(
    moment: datetime, offset_minutes: int, whole_seconds: bool
) -> None:
    if whole_seconds:
        moment = moment.replace(microsecond=0)  # isoformat then leaves the microseconds out
    aware = moment.replace(tzinfo=UTC if offset_minutes == 0 else timezone(timedelta(minutes=offset_minutes)))
    stored = DatetimeAsISO().encode(aware)
    assert stored_utc_text({"_type_": "datetime_iso", "_data_": stored}) == utc_text(aware)


def test_each_folded_topic_reads_as_its_event_class_and_others_as_none() -> None:
    view = runs_view()
    assert view._kind_of(get_topic(Decision.Recorded)) is Decision.Recorded
    assert view._kind_of(get_topic(Action.Committed)) is Action.Committed
    assert view._kind_of(get_topic(Action.RedeliveryRequested)) is None  # counted, not folded


def test_a_renamed_event_classs_old_topic_reads_as_the_class() -> None:
    old_topic = "decisions.old:Decision.Recorded"
    register_topic(old_topic, Decision.Recorded)
    assert runs_view()._kind_of(old_topic) is Decision.Recorded


def test_an_event_class_with_a_class_version_is_refused_until_the_fold_learns_its_upcast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Decision.Recorded, "class_version", 2, raising=False)
    with pytest.raises(TypeError, match=r"Decision\.Recorded has a class_version"):
        runs_view()


@pytest.mark.parametrize(
    "setting",
    [
        {"COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor"},
        {"CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher", "CIPHER_KEY": AESCipher.create_key(16)},
    ],
)
def test_a_ledger_that_would_not_store_canonical_json_refuses_to_start(
    setting: dict[str, str], tmp_path: Path
) -> None:
    target = parse_database_url(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    with pytest.raises(StoredFormRefused, match="stores events as canonical JSON"):
        DecisionLedger(env={**target.library_env(), **setting})
