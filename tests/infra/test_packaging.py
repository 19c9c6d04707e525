"""The wheel carries what an installed ``pcfx`` needs, the demo's supply chain included: built
from a copy of the sources, installed into a throwaway venv and run from an empty folder (no
checkout on the path), as a user who ran ``pip install`` would."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("contracts", "gateway", "infra", "pcfx", "producers", "streams")
SOURCES = ("pyproject.toml", "README.md", "demo", "bench", "pcf_exchange", *PACKAGES)
DEMO_FILES = (
    "art7-pack.yaml",
    "cell-green-electricity.json",
    "electrolyte-update.json",
    "manufacturers-boms.json",
    "suppliers-footprints.json",
)


def repository_packages() -> set[str]:
    """Every folder with an ``__init__.py`` under the shipped top-level packages, named as
    installed (under ``pcf_exchange``)."""
    found = {"pcf_exchange"}
    for top in PACKAGES:
        for init in (ROOT / top).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                found.add(".".join(("pcf_exchange", *init.parent.relative_to(ROOT).parts)))
    return found


def test_every_package_of_the_repository_is_listed_for_the_wheel() -> None:
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(listed["packages"]) - {"pcf_exchange.pcfx.demo_data"} == repository_packages()
    assert listed["package-dir"] == {"pcf_exchange.pcfx.demo_data": "demo"}
    assert sorted(p.name for p in (ROOT / "demo" / "lfp").iterdir()) == list(DEMO_FILES)


def test_the_namespace_links_each_package_folder_of_the_repository() -> None:
    links = {p.name: p for p in (ROOT / "pcf_exchange").iterdir() if p.is_symlink()}
    assert sorted(links) == sorted(PACKAGES)
    for name, link in links.items():
        assert link.resolve() == (ROOT / name).resolve(), name


IMPORT_OF_A_BARE_PACKAGE = re.compile(
    rf"^\s*(?:>>> )?(?:from|import) (?:{'|'.join(PACKAGES)})\b", re.M
)


def test_no_module_imports_a_package_outside_the_namespace() -> None:
    """``from contracts import …`` would load a second copy of a module beside
    ``pcf_exchange.contracts`` in a checkout, and fail once installed."""
    offenders = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
        for top in (*PACKAGES, "bench", "tests")
        for path in (ROOT / top).rglob("*.py")
        if "__pycache__" not in path.parts
        for text in [path.read_text("utf-8")]
        for match in IMPORT_OF_A_BARE_PACKAGE.finditer(text)
    ]
    assert offenders == []


def test_the_cli_loads_no_module_outside_the_namespace() -> None:
    probe = (
        "import sys, pcf_exchange.pcfx.cli as c\n"
        "c.app  # every command group registered\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {set(PACKAGES)!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    (built,) = out.glob("pcf_exchange-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel installed; the dependencies come from this interpreter's
    site-packages through a ``.pth`` line (no download, and not its editable install, whose
    finder is started only by a ``.pth`` file *in* a site folder)."""
    home = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True)
    (lib,) = (home / "lib").glob("python3.*")
    deps = "\n".join(site.getsitepackages())
    (lib / "site-packages" / "deps-of-the-test.pth").write_text(deps + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(home / "bin" / "python")]
    install = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    return home


def run(venv: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_the_wheel_carries_the_demo_data_and_no_test_or_result_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    for name in DEMO_FILES:
        assert f"pcf_exchange/pcfx/demo_data/lfp/{name}" in names, name
    assert "pcf_exchange/producers/data/factors-cn.json" in names
    assert "pcf_exchange/gateway/policies/default.yaml" in names
    # one top-level package: nothing generic (contracts, gateway, bench, …) in site-packages
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {
        "pcf_exchange"
    }


@pytest.mark.slow
def test_an_installed_pcfx_finds_the_demo_data_in_its_own_package(
    venv: Path, tmp_path: Path
) -> None:
    helps = run(venv, "pcfx", "demo", "--help", cwd=tmp_path)
    assert helps.returncode == 0, helps.stderr
    assert "--keep-running" in helps.stdout
    where = run(
        venv,
        "python",
        "-c",
        "import pcf_exchange.pcfx.commands.demo as d, pcf_exchange\n"
        "print(d.DEMO_DIR, d.FACTORS_FILE, pcf_exchange.__file__, sep='\\n')",
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    demo_dir, factors, package = (Path(line) for line in where.stdout.split())
    assert demo_dir.parts[-3:] == ("pcfx", "demo_data", "lfp"), demo_dir
    assert str(package).startswith(str(venv)) and str(demo_dir).startswith(str(venv))
    assert factors.is_file() and str(factors).startswith(str(venv))
    # what the demo computes before it needs the broker (its expected roll-ups): the same
    # files through `pcfx rollup`, from the installed copies
    files = {name: demo_dir / name for name in DEMO_FILES}
    rolled = run(
        venv,
        "pcfx",
        "rollup",
        "--footprints", str(files["suppliers-footprints.json"]),
        "--boms", str(files["manufacturers-boms.json"]),
        "--factors", str(factors),
        "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert rolled.returncode == 0, rolled.stderr[-3000:]
    assert '"results"' in rolled.stdout and '"problems": []' in rolled.stdout.replace("\n", " ")
