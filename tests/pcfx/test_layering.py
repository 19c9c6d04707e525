"""The command line sits on top (ARCHITECTURE, Layout): every ``pcfx`` command lives under
``pcfx/``; the domain packages never import ``pcfx`` and hold no CLI code (no ``typer``).

Read with :mod:`ast`, not by importing, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ("contracts", "producers", "streams", "gateway", "infra")


def imported_roots(source: str) -> set[str]:
    """The top-level package of every absolute import in *source*, wherever it sits."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def domain_modules() -> list[Path]:
    return sorted(path for package in DOMAIN for path in (ROOT / package).rglob("*.py"))


def test_the_scan_sees_imports_anywhere_in_a_module() -> None:
    source = "import os\n\ndef f():\n    from pcfx.console import x\n    import typer.testing\n"
    assert imported_roots(source) == {"os", "pcfx", "typer"}
    assert imported_roots("from . import sibling\nfrom .cli import app\n") == set()


def test_every_domain_package_is_scanned() -> None:
    modules = domain_modules()
    for package in DOMAIN:
        assert any(path.is_relative_to(ROOT / package) for path in modules), package


@pytest.mark.parametrize("package", DOMAIN)
def test_no_domain_module_imports_pcfx_or_typer(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(roots & {"pcfx", "typer"})
        for path in domain_modules()
        if path.is_relative_to(ROOT / package)
        and (roots := imported_roots(path.read_text(encoding="utf-8"))) & {"pcfx", "typer"}
    }
    assert offenders == {}


def test_no_cli_module_is_left_in_the_packages() -> None:
    assert sorted(str(p.relative_to(ROOT)) for p in domain_modules() if p.name == "cli.py") == []
