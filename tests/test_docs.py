"""docs/architecture.md stays true: every module of the package is named in it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ci_swarm"


def modules() -> list[str]:
    """Every module outside the shipped fakes, as the doc names it (``plan.py``, ``github/publish.py``)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "testing" or rel.name == "__main__.py" or rel == Path("__init__.py"):
            continue
        found.append(rel.as_posix())
    return found


def named(module: str, doc: str) -> bool:
    """As a path (``github/publish.py``), or by its file name in the paragraph of its package."""
    if module in doc or f"`{module}`" in doc:
        return True
    package, _, name = module.rpartition("/")
    return bool(package) and f"`{name}`" in doc and f"`{package}/`" in doc


def test_every_module_is_in_the_architecture_doc() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert [m for m in modules() if not named(m, doc)] == []


def test_the_check_sees_a_missing_module() -> None:
    assert not named("nowhere.py", "`plan.py` and `github/` (`publish.py`)")
    assert named("github/publish.py", "`plan.py` and `github/` (`publish.py`)")
