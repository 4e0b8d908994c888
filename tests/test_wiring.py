"""Cheap wiring checks: every registered command and service loads; imports flow one way."""

from __future__ import annotations

import ast
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.cli import main

ROOT = Path(__file__).resolve().parent.parent
# package -> packages of ours it must never import
FORBIDDEN = {
    "core": {"pipelines", "layers", "dashboard"},
    "pipelines": {"layers", "dashboard"},
    "layers": {"pipelines", "dashboard"},
    "dashboard": {"pipelines"},
}


@pytest.mark.parametrize("group", ["yiwang.commands", "yiwang.services"])
def test_every_entry_point_loads(group: str) -> None:
    eps = list(entry_points(group=group))
    assert eps, f"nothing registered under {group}: is the package installed (pip install -e .)?"
    for ep in eps:
        assert callable(ep.load()), ep


def test_help_lists_builtin_and_registered_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    for name in ("demo", "serve", "build-demo", "init", "load-jurisdictions", "users"):
        assert name in result.output


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_flow_one_way(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {bad}"
        for path in (ROOT / package).rglob("*.py")
        for bad in _imported_packages(path) & FORBIDDEN[package]
    ]
    assert not offenders, offenders

