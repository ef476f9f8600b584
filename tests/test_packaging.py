"""The installed packages are declared by hand (pyproject.toml): every package folder must be in the list."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_declared() -> None:
    declared = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    roots = {name.split(".")[0] for name in declared}
    found = {".".join(init.parent.relative_to(REPO).parts) for root in roots for init in (REPO / root).rglob("__init__.py")}
    assert found - declared == set(), "package folders missing from [tool.setuptools] packages"
    data = {name for name in declared - found if (REPO / name.replace(".", "/")).is_dir()}  # folders of files only
    assert declared - found - data == set(), "declared packages that do not exist"
