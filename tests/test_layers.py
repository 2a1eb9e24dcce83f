"""The layer rule, checked on the import graph of ``ci_swarm`` (every module parsed with ``ast``).

- No import cycles. An edge is an import that runs: at module level, or inside a function (deferred, but it
  still runs; a cycle kept alive only by function-level imports is still a cycle). Imports under
  ``if TYPE_CHECKING:`` never run and are not edges. Importing ``a.b`` is an edge to ``a.b`` only, not to
  the package ``a`` (a package's ``__init__`` importing its own submodules is not a cycle).
- The core (every module outside ``github/``, ``llm/``, ``agents/``, ``testing/`` and the entry points
  ``cli``, ``action``, ``__main__``, ``demo``) imports none of the adapter packages, ``anthropic`` or
  ``github``, at any level, typing-only imports included.
- Only ``llm/``, ``agents/claude`` and ``testing/`` import ``anthropic``; only ``github/`` imports ``github``.

The checker is plain functions over a source tree, so the planted-violation test runs the very same code
over a fake package written to ``tmp_path``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import ci_swarm

ADAPTERS = ("github", "llm", "agents", "testing")
ENTRY_POINTS = ("cli", "action", "__main__", "demo")
FOREIGN = ("anthropic", "github")

# Violations that exist on main in files owned by other engineers, reported to the lead. Each entry must
# still exist (test_known_violations_still_exist), so the list shrinks as they are fixed.
KNOWN_CORE_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (a submodule when ``from pkg import sub`` names one)
    line: int
    where: str  # "module", "function" or "typing" (under ``if TYPE_CHECKING:``)


# --- the checker ------------------------------------------------------------------------------


def find_modules(root: Path, package: str) -> dict[str, Path]:
    """``{dotted name: file}`` for every ``.py`` file of the package rooted at ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def find_imports(modules: Mapping[str, Path]) -> list[Import]:
    out: list[Import] = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        out.extend(_walk(tree, name, is_package, modules, "module"))
    return out


def _walk(
    node: ast.AST, name: str, is_package: bool, modules: Mapping[str, Path], where: str
) -> Iterator[Import]:
    for child in ast.iter_child_nodes(node):
        inner = where
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) and where == "module":
            inner = "function"
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from _walk_all(child.body, name, is_package, modules, "typing")
            yield from _walk_all(child.orelse, name, is_package, modules, where)
            continue
        if isinstance(child, ast.Import):
            for alias in child.names:
                yield Import(name, alias.name, child.lineno, where)
        elif isinstance(child, ast.ImportFrom):
            base = _absolute(child, name, is_package)
            for alias in child.names:
                sub = f"{base}.{alias.name}"
                yield Import(name, sub if sub in modules else base, child.lineno, where)
        yield from _walk(child, name, is_package, modules, inner)


def _walk_all(
    nodes: Iterable[ast.stmt], name: str, is_package: bool, modules: Mapping[str, Path], where: str
) -> Iterator[Import]:
    wrapper = ast.Module(body=list(nodes), type_ignores=[])
    yield from _walk(wrapper, name, is_package, modules, where)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = name.split(".")
    if not is_package:
        parts.pop()
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def is_core(module: str, package: str) -> bool:
    rest = module.removeprefix(package).lstrip(".")
    top = rest.split(".")[0] if rest else ""
    return top not in ADAPTERS and top not in ENTRY_POINTS


def core_violations(imports: Iterable[Import], package: str) -> set[tuple[str, str]]:
    """``(core module, forbidden import)`` pairs, at any level."""
    banned = [f"{package}.{a}" for a in ADAPTERS] + list(FOREIGN)
    return {
        (imp.source, imp.target)
        for imp in imports
        if is_core(imp.source, package) and any(_under(imp.target, b) for b in banned)
    }


def import_cycles(
    imports: Iterable[Import], modules: Iterable[str], levels: Iterable[str]
) -> list[tuple[str, ...]]:
    """Every cycle, one per strongly connected component, as ``(a, b, …, a)``; edges of the given levels."""
    known = set(modules)
    wanted = set(levels)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for imp in imports:
        if imp.where in wanted and imp.target in known and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    return [_cycle_in(component, graph) for component in _components(graph) if len(component) > 1]


def _components(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def _cycle_in(component: list[str], graph: Mapping[str, set[str]]) -> tuple[str, ...]:
    """One concrete cycle through the component's first module."""
    members = set(component)
    start = component[0]
    path = [start]
    seen = {start}
    node = start
    while True:
        nxt = sorted(graph[node] & members)
        back = start if start in nxt else None
        if back is not None and len(path) > 1:
            return (*path, start)
        step = next((n for n in nxt if n not in seen), None)
        if step is None:
            return (*path, start)
        path.append(step)
        seen.add(step)
        node = step


def foreign_imports(imports: Iterable[Import], package: str) -> set[tuple[str, str]]:
    """``anthropic`` outside llm/, agents/claude, testing/; ``github`` outside github/."""
    allowed = {
        "anthropic": (f"{package}.llm", f"{package}.agents.claude", f"{package}.testing"),
        "github": (f"{package}.github",),
    }
    return {
        (imp.source, imp.target)
        for imp in imports
        for sdk, owners in allowed.items()
        if _under(imp.target, sdk) and not any(_under(imp.source, o) for o in owners)
    }


# --- the real package -------------------------------------------------------------------------

ROOT = Path(ci_swarm.__file__).parent
MODULES = find_modules(ROOT, "ci_swarm")
IMPORTS = find_imports(MODULES)


def test_the_graph_is_read() -> None:
    assert "ci_swarm.plan" in MODULES
    assert "ci_swarm.agents" in MODULES
    edges = {(i.source, i.target, i.where) for i in IMPORTS}
    assert ("ci_swarm.plan", "ci_swarm.dag", "module") in edges
    assert ("ci_swarm.agents.claude", "ci_swarm.llm.session", "typing") in edges
    assert ("ci_swarm.cli", "ci_swarm.llm.factory", "function") in edges


def test_no_import_cycles_at_module_level() -> None:
    assert import_cycles(IMPORTS, MODULES, ["module"]) == []


def test_no_import_cycles_even_through_function_level_imports() -> None:
    assert import_cycles(IMPORTS, MODULES, ["module", "function"]) == []


def test_the_core_imports_no_adapter_and_no_sdk() -> None:
    found = core_violations(IMPORTS, "ci_swarm")
    assert sorted(found - KNOWN_CORE_VIOLATIONS) == []


def test_known_violations_still_exist() -> None:
    """Remove an entry from KNOWN_CORE_VIOLATIONS once it is fixed."""
    assert sorted(KNOWN_CORE_VIOLATIONS - core_violations(IMPORTS, "ci_swarm")) == []


def test_sdks_only_in_their_adapters() -> None:
    assert sorted(foreign_imports(IMPORTS, "ci_swarm")) == []


# --- the checker catches a planted violation --------------------------------------------------


def plant(root: Path, files: Mapping[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return find_modules(root / "pkg", "pkg")


def test_a_planted_violation_and_cycle_are_reported(tmp_path: Path) -> None:
    modules = plant(
        tmp_path,
        {
            "__init__.py": "",
            "core.py": "from pkg import helper\n",
            "helper.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from pkg.llm import session  # typing only: no edge\n"
                "def later():\n"
                "    from . import core  # a function-level cycle back to core\n"
                "    import anthropic\n"
            ),
            "clean.py": "import json\nfrom pkg.helper import later\n",
            "llm/__init__.py": "",
            "llm/session.py": "import anthropic\nfrom pkg import core\n",
            "agents/__init__.py": "from .runner import go\n",
            "agents/runner.py": "from pkg.agents import go\n",
            "cli.py": "from pkg.llm import session\nfrom pkg.agents import runner\n",
        },
    )
    imports = find_imports(modules)
    assert core_violations(imports, "pkg") == {
        ("pkg.helper", "pkg.llm.session"),
        ("pkg.helper", "anthropic"),
    }
    assert foreign_imports(imports, "pkg") == {("pkg.helper", "anthropic")}
    assert import_cycles(imports, modules, ["module"]) == [("pkg.agents", "pkg.agents.runner", "pkg.agents")]
    assert import_cycles(imports, modules, ["module", "function"]) == [
        ("pkg.agents", "pkg.agents.runner", "pkg.agents"),
        ("pkg.core", "pkg.helper", "pkg.core"),
    ]


def test_relative_imports_resolve(tmp_path: Path) -> None:
    modules = plant(
        tmp_path,
        {
            "__init__.py": "",
            "a/__init__.py": "from . import b\nfrom .b import thing\n",
            "a/b.py": "from .. import c\nfrom ..a import b\n",
            "c.py": "",
        },
    )
    targets = {(i.source, i.target) for i in find_imports(modules)}
    assert targets == {("pkg.a", "pkg.a.b"), ("pkg.a.b", "pkg.c"), ("pkg.a.b", "pkg.a.b")}
