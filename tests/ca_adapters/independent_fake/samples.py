"""The documented bodies under ``samples/<provider>/``, and the check that a live body has their shape."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).parent.parent / "samples"


def sample(provider: str, name: str) -> Any:
    """The documented body of ``samples/<provider>/<name>.json`` (a fresh copy)."""
    return copy.deepcopy(json.loads((SAMPLES / provider / f"{name}.json").read_text())["body"])


def sample_headers(provider: str, name: str) -> list[str]:
    return list(json.loads((SAMPLES / provider / f"{name}.json").read_text()).get("headers", []))


def shape_errors(documented: Any, live: Any, where: str = "$") -> list[str]:
    """Each documented field missing from ``live`` or of another JSON type (null documented: any)."""
    if documented is None:
        return []
    if isinstance(documented, dict):
        if not isinstance(live, dict):
            return [f"{where}: an object is documented"]
        errors = []
        for key, value in documented.items():
            if key not in live:
                errors.append(f"{where}.{key} missing")
            else:
                errors += shape_errors(value, live[key], f"{where}.{key}")
        return errors
    if isinstance(documented, list):
        if not isinstance(live, list):
            return [f"{where}: a list is documented"]
        return [e for item in live for e in shape_errors(documented[0], item, f"{where}[]")] if documented else []
    if type(documented) is not type(live):
        return [f"{where}: {type(documented).__name__} documented, {type(live).__name__} sent"]
    return []
