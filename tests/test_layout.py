"""The package's layering (issue 28, STYLE.md "Where new things go"): no import cycles and no import of another
module's private names anywhere under ``ovpanoptic/``.

Every import counts: top-level, inside functions (lazy) and under ``TYPE_CHECKING``. A module importing a package
imports that package's ``__init__``, so a submodule importing its own package's ``__init__`` while the ``__init__``
imports it is a cycle too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ovpanoptic

PACKAGE = Path(ovpanoptic.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("ovpanoptic", *path.relative_to(PACKAGE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """Edges ``module -> imported module`` and the private names imported from other modules."""
    edges: dict[str, set[str]] = {name: set() for name in modules}
    private: list[str] = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        aliases: dict[str, str] = {}
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets: list[tuple[str, str | None]] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    if full in modules:
                        targets.append((full, None))
                        aliases[alias.asname or alias.name] = full
                    else:
                        targets.append((source, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    targets.append((alias.name, None))
                    if alias.asname and alias.name in modules:
                        aliases[alias.asname] = alias.name
            for target, symbol in targets:
                if target not in modules or target == name:
                    continue
                edges[name].add(target)
                if symbol and symbol.startswith("_") and not symbol.startswith("__"):
                    private.append(f"{name} imports {symbol} from {target}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and aliases[node.value.id] != name
            ):
                private.append(f"{name} uses {aliases[node.value.id]}.{node.attr}")
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_checker_finds_a_cycle_and_a_private_import(tmp_path: Path) -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    edges, _ = _imports(_modules())
    cycles = _cycles(edges)
    detail = [
        " -> ".join(cycle) + "  (" + "; ".join(f"{a} -> {b}" for a in cycle for b in sorted(edges[a]) if b in cycle) + ")"
        for cycle in cycles
    ]
    assert not cycles, "import cycles under ovpanoptic/:\n" + "\n".join(detail)


def test_no_private_names_imported_from_another_module() -> None:
    _, private = _imports(_modules())
    assert not private, "private names used across modules:\n" + "\n".join(sorted(set(private)))


def test_every_package_ships_in_the_wheel() -> None:
    """pyproject.toml lists the packages by name (``ovpanoptic.configs`` maps the top-level configs/ folder):
    a package added under ovpanoptic/ and not listed there would be missing from every installed copy."""
    import tomllib

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text("utf-8"))
    listed = set(pyproject["tool"]["setuptools"]["packages"]) - {"ovpanoptic.configs"}
    packages = {name for name, path in _modules().items() if path.name == "__init__.py"}
    assert listed == packages, f"not in pyproject.toml: {sorted(packages - listed)}; listed but absent: {sorted(listed - packages)}"


#: What each area must never import (STYLE.md "Shape of the package" and each package's ``__init__`` docstring):
#: core code asks the registry for components and never imports ``builtins``; formats sit below evaluation, serve
#: and the engines; the CLI and the demo are the top, imported by nothing but their entry points.
FORBIDDEN: dict[str, frozenset[str]] = {
    "formats": frozenset({"builtins", "cli", "demo", "engines", "evaluation", "packaging", "pipeline", "serve", "video"}),
    "evaluation": frozenset({"builtins", "cli", "demo", "engines", "packaging", "pipeline", "serve", "video"}),
    "video": frozenset({"builtins", "cli", "demo", "engines", "pipeline", "serve"}),
    "serve": frozenset({"builtins", "cli", "demo", "engines"}),
    "drawing": frozenset({"builtins", "cli", "demo", "pipeline", "video"}),
    "pipeline": frozenset({"builtins", "cli", "demo", "engines"}),
    "engines": frozenset({"builtins", "cli", "demo"}),
    "packaging": frozenset({"builtins", "cli", "demo"}),
    "demo": frozenset({"builtins", "cli"}),
    "cli": frozenset({"builtins"}),
    "builtins": frozenset({"cli", "demo", "engines", "evaluation", "packaging", "pipeline", "serve"}),
}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_runs_back_up() -> None:
    edges, _ = _imports(_modules())
    wrong = [
        f"{module} imports {target}"
        for module, targets in sorted(edges.items())
        for target in sorted(targets)
        if _area(target) in FORBIDDEN.get(_area(module), frozenset())
    ]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)
