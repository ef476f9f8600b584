"""``audit-anchors.jsonl``: signed checkpoints and restores, one JSON object a line, append only.

In production the file is shipped off the machine as it grows: whoever can rewrite the database
cannot also take back what was shipped, which is how a cut tail is detected.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINT = "checkpoint"
RESTORED = "restored"


@dataclass(frozen=True)
class AnchorLine:
    line: int
    record: dict[str, Any] | None
    """None when the line is not a JSON object (reported by the verifier)."""


def append_anchor(path: Path, record: dict[str, Any]) -> None:
    """Append one line; O_APPEND keeps concurrent writers' lines whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_anchors(path: Path) -> list[AnchorLine]:
    if not path.exists():
        return []
    lines: list[AnchorLine] = []
    with path.open(encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                record = None
            lines.append(AnchorLine(number, record if isinstance(record, dict) else None))
    return lines


def newest_checkpoint(path: Path) -> dict[str, Any] | None:
    """The last checkpoint line of the file, as written."""
    for anchor in reversed(read_anchors(path)):
        if anchor.record is not None and anchor.record.get("type") == CHECKPOINT:
            return anchor.record
    return None
