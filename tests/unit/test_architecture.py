"""The structure the code base promises, checked by reading the product's source with `ast`.

The product is the four layers (domain, application, infrastructure, interfaces). Every
import counts, including those inside functions and under `TYPE_CHECKING`: a cycle or an
upward import hidden there is still one. Each check names what breaks it, so a failure
says where to look.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
LAYERS = ("domain", "application", "infrastructure", "interfaces")
#: What each layer may not import: the layers above it.
FORBIDDEN_BELOW = {
    "domain": ("application", "infrastructure", "interfaces"),
    "application": ("infrastructure", "interfaces"),
}
#: The modules under interfaces/ that build the application and so may name its adapters.
COMPOSITION_ROOT = {"interfaces.bootstrap", "interfaces.serving", "interfaces.api.app"}
#: The one infrastructure module every interface may read: the settings.
SETTINGS_MODULE = "infrastructure.settings"
#: Attributes of the service's ledger that are its storage, not its application methods.
STORAGE_ATTRIBUTES = {"index", "recorder"}
MAX_MODULE_LINES = 400
#: Folders whose modules are not product code, or not ours.
NOT_PRODUCT = {"tests", "bench", "build", "dist", "node_modules", "site-packages"}

#: The adapters the application still builds on directly (each a port left to extract): the
#: projections' view stores are the library's tracking recorders, the library's internals sit
#: behind one adapter, the dispatcher takes the effectors' configuration and the webhook
#: sender, the transparency log its checkpoint store and key ring.
APPLICATION_ADAPTERS = {
    "infrastructure.view_store",
    "infrastructure.eventsourcing_compat",
    "infrastructure.effectors",
    "infrastructure.webhook_sender",
    "infrastructure.checkpoint_store",
    "infrastructure.keyring",
}


@dataclass(frozen=True)
class Import:
    """One import statement's target, as the module it names in the product."""

    source: str
    target: str
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPOSITORY).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def product_modules() -> dict[str, Path]:
    """Every module of the four layers, by dotted name."""
    return {
        module_name(path): path
        for layer in LAYERS
        for path in sorted((REPOSITORY / layer).rglob("*.py"))
        if "__pycache__" not in path.parts
    }


@cache
def syntax_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def resolved(name: str) -> str | None:
    """The product module an import of `name` loads: itself, or its nearest package."""
    modules = product_modules()
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> Iterator[Import]:
    path = product_modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(syntax_tree(path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` imports the module; `from module import name`, the module.
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        targets = {resolved(name) for name in names} - {None, module}
        for target in sorted(t for t in targets if t is not None):
            yield Import(module, target, node.lineno)


@cache
def import_graph() -> dict[str, frozenset[str]]:
    return {module: frozenset(each.target for each in imports_of(module)) for module in product_modules()}


def cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """One cycle through each group of modules that import each other (Tarjan's strongly
    connected components), written as the path that closes it: a -> b -> a."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                lowest[module] = min(lowest[module], lowest[target])
            elif target in on_stack:
                lowest[module] = min(lowest[module], index[target])
        if lowest[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return [cycle_within(graph, set(component)) for component in components]


def cycle_within(graph: dict[str, frozenset[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside it."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(graph[module] & component):
                if target == start:
                    return [*paths[module], start]
                if target not in paths:
                    paths[target] = [*paths[module], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def product_files() -> Iterator[Path]:
    """Every Python file of the repository but the tests, the benchmarks and hidden folders."""
    for path in sorted(REPOSITORY.rglob("*.py")):
        relative = path.relative_to(REPOSITORY).parts
        if not any(part.startswith(".") or part in NOT_PRODUCT for part in relative[:-1]):
            yield path


def layer_of(module: str) -> str:
    return module.split(".")[0]


def in_layer(module: str, layer: str) -> bool:
    return module == layer or module.startswith(f"{layer}.")


# --- The checks can fail: each is first shown a small tree that breaks it --------------------


def test_the_cycle_finder_names_a_cycle_and_passes_a_tree_without_one() -> None:
    graph = {
        "a.one": frozenset({"a.two"}),
        "a.two": frozenset({"a.three"}),
        "a.three": frozenset({"a.one", "a.four"}),
        "a.four": frozenset(),
    }
    assert cycles(graph) == [["a.one", "a.two", "a.three", "a.one"]]
    assert cycles({**graph, "a.three": frozenset({"a.four"})}) == []


def test_the_import_reader_finds_every_import_of_a_product_module() -> None:
    # Top-level, inside functions, under TYPE_CHECKING, absolute or relative: each import
    # statement that names a product module is an edge of the graph.
    for module, path in product_modules().items():
        written = {
            node.lineno
            for node in ast.walk(syntax_tree(path))
            if (
                isinstance(node, ast.ImportFrom)
                and (node.level or (node.module or "").split(".")[0] in LAYERS)
            )
            or (
                isinstance(node, ast.Import)
                and any(alias.name.split(".")[0] in LAYERS for alias in node.names)
            )
        }
        found = {each.line for each in imports_of(module)}
        assert written <= found, (module, sorted(written - found))


def test_the_product_is_found_where_the_layers_are() -> None:
    modules = product_modules()
    assert {layer_of(module) for module in modules} == set(LAYERS)
    assert len(modules) > 20, sorted(modules)


# --- Acceptance points 2 and 3 of issue 12 ---------------------------------------------------


def test_no_module_imports_itself_back_through_others() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_interfaces_import_infrastructure_only_in_the_composition_root() -> None:
    reaching = [
        f"{product_modules()[each.source].relative_to(REPOSITORY)}:{each.line} imports {each.target}"
        for module in product_modules()
        if in_layer(module, "interfaces") and module not in COMPOSITION_ROOT
        for each in imports_of(module)
        if in_layer(each.target, "infrastructure") and each.target != SETTINGS_MODULE
    ]
    assert reaching == [], "interfaces importing infrastructure:\n" + "\n".join(reaching)


def test_interfaces_never_reach_through_the_ledger_into_its_storage() -> None:
    # `service.ledger.index…` and `service.ledger.recorder` are infrastructure reached
    # through the application: the service should offer a method instead.
    reaching = sorted(
        f"{path.relative_to(REPOSITORY)}:{node.lineno} uses .ledger.{node.attr}"
        for module, path in product_modules().items()
        if in_layer(module, "interfaces")
        for node in ast.walk(syntax_tree(path))
        if isinstance(node, ast.Attribute)
        and node.attr in STORAGE_ATTRIBUTES
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ledger"
    )
    assert reaching == [], "interfaces reaching into storage:\n" + "\n".join(reaching)


def test_no_product_module_is_longer_than_four_hundred_lines() -> None:
    long_modules = [
        f"{path.relative_to(REPOSITORY)}: {lines} lines"
        for path in product_files()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert long_modules == [], f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(long_modules)


def test_inner_layers_import_nothing_from_the_layers_around_them() -> None:
    upward = [
        f"{product_modules()[each.source].relative_to(REPOSITORY)}:{each.line} imports {each.target}"
        for module in product_modules()
        for each in imports_of(module)
        if any(in_layer(each.target, outer) for outer in FORBIDDEN_BELOW.get(layer_of(module), ()))
        and not (layer_of(module) == "application" and each.target in APPLICATION_ADAPTERS)
    ]
    assert upward == [], "inner layers importing outer ones:\n" + "\n".join(upward)
