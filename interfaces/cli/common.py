"""What every sub-command shares: settings, the service, one-line failures, progress."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from application.queries.points import PointInLog
from application.redaction import redacted
from application.service import LedgerService
from application.stored_form import StoredFormRefused
from domain.errors import InvalidCommand, LedgerError
from domain.fields import require_utc_offset
from infrastructure.settings import ConfigurationError, Settings

out = Console()
err = Console(stderr=True)
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="sqlite:///file or postgresql://user@host/db (default: settings)"),
]


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr: exit 2 for bad input, 1 for a verification that fails."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def load_settings(database_url: str | None = None, **overrides: Any) -> Settings:
    try:
        values = {key: value for key, value in overrides.items() if value is not None}
        if database_url is not None:
            values["database_url"] = database_url
        return Settings(**values)
    except ValidationError as error:
        problem = error.errors()[0]
        fail(f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}")
    except LedgerError as error:
        fail(error.detail)


@contextmanager
def service_for(settings: Settings, *, signing: bool = False) -> Iterator[LedgerService]:
    """The service, for a command. Only commands that sign get (or make) a signing key."""
    from interfaces.bootstrap import build_service

    try:
        service = build_service(settings, signing=signing)
    except (LedgerError, ConfigurationError, StoredFormRefused) as error:
        fail(getattr(error, "detail", str(error)))
    except Exception as error:  # the database is unreachable, or refuses us
        fail(f"cannot open {settings.database().describe()}: {redacted(str(error).splitlines()[0])}")
    try:
        yield service
    except LedgerError as error:
        fail(error.detail)
    finally:
        service.close()


@contextmanager
def tracked(description: str) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """A progress bar with events/s and an ETA: (set the total, advance by a count)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9} events/s"),
        TimeRemainingColumn(),
        console=err,
    ) as bar:
        task = bar.add_task(description, total=None, rate="-")

        def set_total(total: int) -> None:
            bar.update(task, total=total)

        def advance(count: int) -> None:
            bar.advance(task, count)
            speed = bar.tasks[task].speed
            bar.update(task, rate=f"{speed:,.0f}" if speed else "-")

        yield set_total, advance


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as error:
        fail(f"cannot read {path}: {error.strerror}")
    except ValueError as error:
        fail(f"{path} is not JSON: {error}")


def parse_time(value: str, option: str) -> datetime:
    """An RFC 3339 time with a UTC offset, or a one-line failure naming the option."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} takes an RFC 3339 time with an offset, got {value!r}")
    return parse_time_offset(moment, option)


def parse_time_offset(moment: datetime, option: str) -> datetime:
    try:
        return require_utc_offset(moment, option)
    except InvalidCommand as error:
        fail(error.detail)


def as_of_position(service: LedgerService, as_of: str | None) -> int | None:
    """`--as-of`: a position, or an RFC 3339 time."""
    if as_of is None:
        return None
    if as_of.isdigit():
        return service.position_of(PointInLog(as_of_position=int(as_of)))
    try:
        moment = datetime.fromisoformat(as_of)
    except ValueError:
        fail(f"--as-of takes a position or an RFC 3339 time with an offset, got {as_of!r}")
    return service.position_of(PointInLog(as_of=parse_time_offset(moment, "--as-of")))


def log_followers() -> None:
    """Show what the followers do (who leads, take-overs, failures) on stderr, with times."""
    import logging

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for name in ("application.election", "application.projections.worker"):
        logging.getLogger(name).setLevel(logging.INFO)
