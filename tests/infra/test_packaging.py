"""The wheel carries what an installed ``pcfx`` needs, the demo's supply chain included: built
from a copy of the sources, installed into a throwaway venv and run from an empty folder (no
checkout on the path), as a user who ran ``pip install`` would."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "demo", "bench", "contracts", "gateway", "infra",
           "pcfx", "producers", "streams")  # fmt: skip
DEMO_FILES = (
    "art7-pack.yaml",
    "cell-green-electricity.json",
    "electrolyte-update.json",
    "manufacturers-boms.json",
    "suppliers-footprints.json",
)


def repository_packages() -> set[str]:
    """Every folder with an ``__init__.py`` under the shipped top-level packages."""
    found = set()
    for top in ("bench", "contracts", "gateway", "infra", "pcfx", "producers", "streams"):
        for init in (ROOT / top).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                found.add(".".join(init.parent.relative_to(ROOT).parts))
    return found


def test_every_package_of_the_repository_is_listed_for_the_wheel() -> None:
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(listed["packages"]) - {"pcfx.demo_data"} == repository_packages()
    assert listed["package-dir"] == {"pcfx.demo_data": "demo"}
    assert sorted(p.name for p in (ROOT / "demo" / "lfp").iterdir()) == list(DEMO_FILES)


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
        [*pip, "install", "--no-deps", "--no-index", "-q", str(wheel)],
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
        assert f"pcfx/demo_data/lfp/{name}" in names, name
    assert "producers/data/factors-cn.json" in names
    assert "gateway/policies/default.yaml" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/results/", "demo/"))]


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
        "import pcfx.commands.demo as d, pcfx\n"
        "print(d.DEMO_DIR, d.FACTORS_FILE, pcfx.__file__, sep='\\n')",
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
