"""The public surface of the roll-up core, and its purity: no Kafka, faust, pydantic or I/O."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pcf_exchange.streams.rollup as rollup

PACKAGE_DIR = Path(rollup.__file__).parent
FORBIDDEN = {
    "faust",
    "mode",
    "aiokafka",
    "kafka",
    "pydantic",
    "fastavro",
    "avro",
    "socket",
    "asyncio",
    "requests",
    "httpx",
    "os",
    "io",
    "pathlib",
    "sqlite3",
    "random",
    "time",
}


def test_all_lists_exactly_the_public_names() -> None:
    public = sorted(name for name in vars(rollup) if not name.startswith("_"))
    public = [name for name in public if name != "annotations"]
    assert sorted(rollup.__all__) == public


def test_every_module_has_a_docstring() -> None:
    for info in pkgutil.iter_modules([str(PACKAGE_DIR)]):
        module = importlib.import_module(f"pcf_exchange.streams.rollup.{info.name}")
        assert module.__doc__ and len(module.__doc__) > 80, info.name
    assert rollup.__doc__


def test_core_imports_nothing_that_does_io_or_talks_to_kafka() -> None:
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, (path.name, name)


def test_no_binary_floats_in_the_core() -> None:
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        floats = [
            n for n in ast.walk(tree) if isinstance(n, ast.Constant) and type(n.value) is float
        ]
        assert floats == [], path.name


def test_content_hash_is_sha256_of_contracts_canonical_json() -> None:
    import hashlib

    from pcf_exchange.contracts.canonical import canonical_json
    from pcf_exchange.streams.rollup import run_batch
    from tests.streams._rollup_helpers import bom, fp, line

    result = run_batch([fp("a", "2.50", std="0.1")], [bom("p", line("a", 3), direct="1.5")], [])[
        "p"
    ]
    expected = "sha256:" + hashlib.sha256(canonical_json(result.canonical())).hexdigest()
    assert result.content_hash == expected


def test_docstring_examples_run() -> None:
    import doctest

    for info in pkgutil.iter_modules([str(PACKAGE_DIR)]):
        module = importlib.import_module(f"pcf_exchange.streams.rollup.{info.name}")
        failed, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert failed == 0, info.name
