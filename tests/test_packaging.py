"""The wheel: configs/ ships as package data ``videoglore.configs``, every package is in it, and an
installed ``videoglore demo`` finds its default config in the installed files."""

import json
import shutil
import subprocess
import sys
import zipfile

from tests.helpers import REPO

PACKAGE_ROOTS = ("videoglore", "data_prep", "benchmarks")

# Run inside the installed copy: the demo's default config (what `demo` without --config runs,
# tests/test_cli.py) and the package's own path.
PROBE = """
import json
import videoglore
from videoglore.config import load_config, shipped_config
config = shipped_config("demo.yaml")
print(json.dumps({
    "package": videoglore.__file__,
    "config": str(config),
    "width": load_config(config).model.width,
}))
"""


def _build_wheel(tmp_path):
    """Build from a copy of the sources, so that build/ and *.egg-info never land in the
    checkout; offline (no build isolation) and without dependencies."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in (*PACKAGE_ROOTS, "configs"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["--disable-pip-version-check", "-w", str(dist), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("videoglore-*.whl")
    return wheel


def test_wheel_ships_configs_and_the_installed_demo_finds_them(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())

    shipped = {name for name in names if name.startswith("videoglore/configs/")}
    assert shipped == {f"videoglore/configs/{p.name}" for p in (REPO / "configs").glob("*.yaml")}
    assert not any(name.startswith("configs/") for name in names)
    # pyproject.toml lists the packages by name: each one of the checkout must be in the wheel
    packages = {
        init.parent.relative_to(REPO).as_posix()
        for root in PACKAGE_ROOTS
        for init in (REPO / root).rglob("__init__.py")
    }
    assert {f"{package}/__init__.py" for package in packages} <= names

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--disable-pip-version-check"]
        + ["--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    probe = json.loads(done.stdout)
    assert probe["package"] == str(site / "videoglore" / "__init__.py")
    assert probe["config"] == str(site / "videoglore" / "configs" / "demo.yaml")
    assert probe["width"] == 0.125
