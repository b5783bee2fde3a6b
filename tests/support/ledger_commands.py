"""The command handlers of a bare DecisionLedger, wired as the service wires them
(one set per ledger, so its answer cache and threads are shared by a test's calls)."""

from __future__ import annotations

import weakref

from application.commands import Commands
from application.ledger import DecisionLedger

_WIRED: weakref.WeakKeyDictionary[DecisionLedger, Commands] = weakref.WeakKeyDictionary()


def commands_of(ledger: DecisionLedger) -> Commands:
    commands = _WIRED.get(ledger)
    if commands is None:
        commands = _WIRED[ledger] = Commands.over(ledger)
    return commands
