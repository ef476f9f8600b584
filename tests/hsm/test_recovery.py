"""The token goes away and comes back while threads sign: the process recovers without a restart.

A subprocess with its own token store (SoftHSM reads its configuration once per process): moving the session's token away would be felt by
every other test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

SCRIPT = r"""
import hashlib, json, shutil, sys, threading, time
from pathlib import Path
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from hsm import HsmError, KeyAlgorithm, SignatureScheme, TokenMissing
from hsm.store import activate_token_store, token_store_dir
from hsm.library import DEFAULT_MODULE, initialize_token
from hsm.token import Hsm

data_dir, away = Path(sys.argv[1]), Path(sys.argv[2])
activate_token_store(data_dir)
initialize_token(DEFAULT_MODULE, "kyso", "so-pin-0000", "user-pin-1111")
hsm = Hsm(DEFAULT_MODULE, "kyso", "user-pin-1111", max_sessions=4)
public = serialization.load_der_public_key(hsm.generate_key("k", KeyAlgorithm.EC_P256).public_key_der)
digest = hashlib.sha256(b"payment order").digest()
errors, signatures, phase, stop = {}, [], ["before"], threading.Event()

def sign():
    while not stop.is_set():
        try:
            signatures.append(hsm.sign_digest("k", digest, "sha256", SignatureScheme.ECDSA))
        except HsmError as exc:
            key = f"{phase[0]}:{type(exc).__name__}"
            errors[key] = errors.get(key, 0) + 1
            time.sleep(0.01)

threads = [threading.Thread(target=sign) for _ in range(4)]
for t in threads:
    t.start()
time.sleep(0.3)
[token_dir] = (token_store_dir(data_dir) / "tokens").iterdir()
phase[0] = "away"
shutil.move(str(token_dir), str(away))
time.sleep(0.5)
try:
    hsm.ping()
    ping_away = "ok"
except TokenMissing as exc:
    ping_away = exc.code
phase[0] = "back"
shutil.move(str(away), str(token_dir))
started, recovered_after = time.monotonic(), None
while time.monotonic() - started < 20:
    try:
        hsm.ping()
        recovered_after = time.monotonic() - started
        break
    except HsmError:
        time.sleep(0.1)
phase[0] = "after"
count_before = len(signatures)
time.sleep(0.5)
stop.set()
for t in threads:
    t.join()
for signature in signatures:
    public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
hsm.close()
print(json.dumps({"ping_away": ping_away, "recovered_after": recovered_after, "errors": errors,
                  "signed_after": len(signatures) - count_before}))
"""


def test_signing_threads_survive_the_token_going_away_and_coming_back(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "data"), str(tmp_path / "away")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ping_away"] == "hsm_token_missing", report
    assert report["recovered_after"] is not None and report["recovered_after"] < 15, report
    assert report["signed_after"] > 0, report  # and every signature verified with the public key
    # While the token was away, calls failed as "token missing" (never "key not found"); none after.
    assert {key.split(":")[1] for key in report["errors"]} == {"TokenMissing"}, report
    assert not any(key.startswith("after:") for key in report["errors"]), report
