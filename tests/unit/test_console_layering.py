"""The console uses only what the application offers: no module of interfaces/console
imports infrastructure (the composition root, interfaces/api/app.py, wires it)."""

from __future__ import annotations

import ast
from pathlib import Path

CONSOLE = Path(__file__).resolve().parents[2] / "interfaces" / "console"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_console_module_imports_infrastructure() -> None:
    modules = sorted(CONSOLE.glob("*.py"))
    assert len(modules) >= 5, "the console's modules were not found"
    offenders = {
        path.name: sorted(name for name in imported_modules(path) if name.split(".")[0] == "infrastructure")
        for path in modules
    }
    assert {name: found for name, found in offenders.items() if found} == {}
