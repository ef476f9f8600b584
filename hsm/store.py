"""A private SoftHSM2 token store inside a data dir.

SoftHSM2 reads ``SOFTHSM2_CONF`` once, when the module is first loaded in a process, so one
process serves one data dir. The config is rendered again at every start so that a data dir
can be moved or restored elsewhere.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "softhsm-config" / "softhsm2.conf.in"


def token_store_dir(data_dir: Path) -> Path:
    return data_dir / "softhsm"


def ensure_token_store(data_dir: Path) -> Path:
    """Create ``DATA_DIR/softhsm/{tokens,softhsm2.conf}``; return the config path."""
    store = token_store_dir(data_dir.resolve())
    tokens = store / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    os.chmod(store, 0o700)
    os.chmod(tokens, 0o700)
    conf = store / "softhsm2.conf"
    text = TEMPLATE.read_text().replace("@TOKENDIR@", str(tokens))
    if not conf.exists() or conf.read_text() != text:
        tmp = conf.with_suffix(".tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o600)
        tmp.replace(conf)
    return conf


def activate_token_store(data_dir: Path) -> Path:
    """Point this process's SoftHSM2 at the data dir's store (before the module loads)."""
    conf = ensure_token_store(data_dir)
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return conf


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m hsm.store DATA_DIR", file=sys.stderr)
        raise SystemExit(2)
    print(ensure_token_store(Path(sys.argv[1])))
