"""The import direction of docs/ARCHITECTURE.md §1, checked on the source: a wrong import fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

INFRASTRUCTURE = (
    "gad.caching",
    "gad.db_session",
    "gad.embedded",
    "gad.errors",
    "gad.extensions",
    "gad.metrics",
    "gad.net",
    "gad.observability",
    "gad.openapi",
    "gad.pg",
    "gad.principal_cache",
    "gad.ratelimit",
    "gad.ratelimit_storage",
    "gad.readiness",
    "gad.realtime",
    "gad.rejections",
    "gad.reqctx",
    "gad.throttle",
    "gad.vocab",
)
# (importing modules, modules they must not import, why)
RULES = [
    (("gad.schemas",), ("gad.",), "schemas import nothing from the app but other schemas, the vocabulary and the text rules"),
    (INFRASTRUCTURE, ("gad.services", "gad.blueprints", "gad.commands"), "infrastructure never depends on business rules or views"),
    (("gad.services",), ("gad.blueprints", "gad.commands"), "services never depend on views or the CLI"),
    (("gad.text",), ("gad.",), "the text rules import nothing from the app: schemas, services and the importer all read text by them"),
    (("gad.models",), ("gad.services", "gad.blueprints", "gad.commands", "gad.realtime", "gad.schemas"), "models are the bottom layer"),
]
ALLOWED = {"gad.schemas": ("gad.schemas", "gad.vocab", "gad.text")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``gad`` module a file imports, at any depth (a function-level import is still a dependency)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "gad" or name.startswith("gad.")}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix.rstrip(".") or name.startswith(prefix.rstrip(".") + ".") for prefix in prefixes)


SOURCES = sorted((ROOT / "gad").rglob("*.py"))


@pytest.mark.parametrize("rule", RULES, ids=[why for _, _, why in RULES])
def test_imports_follow_the_layers(rule: tuple[tuple[str, ...], tuple[str, ...], str]) -> None:
    importers, forbidden, _ = rule
    broken = []
    for path in SOURCES:
        module = _module_name(path)
        if not _within(module, importers):
            continue
        allowed = next((ok for layer, ok in ALLOWED.items() if _within(module, (layer,))), ())
        for name in _imports(path):
            if _within(name, forbidden) and not _within(name, allowed):
                broken.append(f"{module} imports {name}")
    assert not broken


def test_config_imports_nothing_from_gad() -> None:
    assert not _imports(ROOT / "config.py")


def test_rows_are_locked_only_through_db_session_for_update() -> None:
    """A lock taken with SQLAlchemy's ``with_for_update`` alone hands back an object the session already held as it
    was read before the lock (a self-edit's caller, a turno read first): two writers both passed a version check."""
    lockers = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            named = (isinstance(node, ast.Attribute) and node.attr == "with_for_update") or (isinstance(node, ast.keyword) and node.arg == "with_for_update")
            if named and path != ROOT / "gad" / "db_session.py":
                lockers.append(f"{path.relative_to(ROOT)}:{node.lineno if isinstance(node, ast.Attribute) else node.value.lineno}")
    assert not lockers
