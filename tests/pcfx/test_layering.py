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


def root_of(module: str) -> str:
    """The package a module path names: ``pcf_exchange.pcfx.console`` → ``pcfx``."""
    parts = module.split(".")
    return parts[1] if parts[0] == "pcf_exchange" and len(parts) > 1 else parts[0]


def imported_roots(source: str) -> set[str]:
    """The package of every absolute import in *source*, wherever it sits (our own packages
    named without their ``pcf_exchange.`` namespace)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(root_of(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "pcf_exchange":
                roots.update(alias.name for alias in node.names)
            else:
                roots.add(root_of(node.module))
    return roots


def domain_modules() -> list[Path]:
    return sorted(path for package in DOMAIN for path in (ROOT / package).rglob("*.py"))


def test_the_scan_sees_imports_anywhere_in_a_module() -> None:
    source = (
        "import os\n\ndef f():\n    from pcf_exchange.pcfx.console import x\n    import typer\n"
    )
    assert imported_roots(source) == {"os", "pcfx", "typer"}
    namespaced = "from pcf_exchange import pcfx\nimport pcf_exchange.pcfx.cli\n"
    assert imported_roots(namespaced) == {"pcfx"}
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
