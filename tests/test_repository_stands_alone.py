"""Code, comments and the README never send a reader to documents outside the repository: the reason
for a rule is written where the rule is (or in docs/)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# A pointer at the design notes this repository was built from: their file names, a numbered
# decision or trap, a path above the repository. The names are written in pieces so that this file
# does not match its own search.
_NOTES = ("DESI" "GN", "STACK" "_NOTES", "CA" "_APIS", "STY" "LE")
POINTER = re.compile("|".join([r"\.\./" "shared", *(rf"\b{name}\b" for name in _NOTES),
                               r"\b[Dd]ecision \d+", r"\btrap \d+"]))


def test_no_file_points_outside_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    this = Path(__file__).resolve().relative_to(REPO).as_posix()
    found = []
    for name in tracked:
        if name == this or not name.endswith((".py", ".md", ".toml", ".cfg", ".ini", ".sh", "Makefile", ".html", ".js")):
            continue
        path = REPO / name
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if POINTER.search(line):
                found.append(f"{name}:{number}: {line.strip()[:100]}")
    assert found == []
