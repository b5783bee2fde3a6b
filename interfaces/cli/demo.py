"""`decision-ledger demo`: a fraud lane on a fresh ledger, watched in the console."""

from __future__ import annotations

from typing import Annotated

import typer

from interfaces.cli.common import fail, out


def demo(
    transactions: Annotated[int, typer.Option(min=10, max=100_000, help="Transactions per run")] = 1_000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic lane")] = 7,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default: a free one)")] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Keep serving the console at the end")
    ] = True,
) -> None:
    """A fraud lane on a fresh ledger in a temporary directory: a green run, a red one, its
    remediation; the console shows them (http://127.0.0.1:PORT/console)."""
    from interfaces.demo.runner import DemoFailed, run_demo

    try:
        report = run_demo(out, transactions_per_run=transactions, seed=seed, port=port, wait=wait)
    except DemoFailed as failure:
        fail(f"demo failed: {failure}", code=1)
    except OSError as error:
        fail(f"demo could not start: {error}")
    if not report.succeeded:
        raise typer.Exit(1)
