"""The PKCS#11 layer against a real SoftHSM token."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from hsm import Hsm, HsmError, KeyAlgorithm, KeyNotFound, MechanismUnsupported, SignatureScheme
from tests.support import REPO


@pytest.fixture(scope="module")
def keys(hsm: Hsm) -> dict[str, bytes]:
    """Test keys: id → SubjectPublicKeyInfo."""
    out = {}
    for key_id, algorithm in [("t-rsa", KeyAlgorithm.RSA_2048), ("t-ec256", KeyAlgorithm.EC_P256), ("t-ec384", KeyAlgorithm.EC_P384)]:
        out[key_id] = hsm.generate_key(key_id, algorithm).public_key_der
    return out


def test_private_keys_are_sensitive_and_never_extractable(hsm: Hsm, keys: dict[str, bytes]) -> None:
    for key_id in keys:
        attrs = hsm.key_attributes(key_id)
        assert attrs == {"sensitive": True, "extractable": False, "always_sensitive": True, "never_extractable": True}
        with pytest.raises(HsmError, match="not readable"):
            hsm.read_private_value(key_id)


def test_signatures_verify_with_the_exported_public_key(hsm: Hsm, keys: dict[str, bytes]) -> None:
    digest = hashlib.sha256(b"payment order 123").digest()
    rsa_pub = serialization.load_der_public_key(keys["t-rsa"])
    sig = hsm.sign_digest("t-rsa", digest, "sha256", SignatureScheme.RSA_PKCS1_V15)
    rsa_pub.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))  # type: ignore[union-attr]
    sig = hsm.sign_digest("t-rsa", digest, "sha256", SignatureScheme.RSA_PSS, pss_salt_length=32)
    rsa_pub.verify(sig, digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32), utils.Prehashed(hashes.SHA256()))  # type: ignore[union-attr]
    for key_id, hash_name, algo in [("t-ec256", "sha256", hashes.SHA256()), ("t-ec384", "sha384", hashes.SHA384())]:
        d = hashlib.new(hash_name, b"x").digest()
        der = hsm.sign_digest(key_id, d, hash_name, SignatureScheme.ECDSA)
        assert der[0] == 0x30  # DER ECDSA-Sig-Value, not raw r||s
        serialization.load_der_public_key(keys[key_id]).verify(der, d, ec.ECDSA(utils.Prehashed(algo)))  # type: ignore[union-attr,call-arg]


def test_four_threads_sign_at_once_repeatedly(hsm: Hsm, keys: dict[str, bytes]) -> None:
    rsa_pub = serialization.load_der_public_key(keys["t-rsa"])
    ec_pub = serialization.load_der_public_key(keys["t-ec256"])
    errors: list[BaseException] = []
    results: list[tuple[str, bytes, bytes]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(15):
                digest = hashlib.sha256(f"{n}-{i}".encode()).digest()
                key_id = "t-rsa" if n % 2 else "t-ec256"
                scheme = SignatureScheme.RSA_PKCS1_V15 if n % 2 else SignatureScheme.ECDSA
                sig = hsm.sign_digest(key_id, digest, "sha256", scheme)
                with lock:
                    results.append((key_id, digest, sig))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for _ in range(3):
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert len(results) == 3 * 4 * 15
    for key_id, digest, sig in results:
        if key_id == "t-rsa":
            rsa_pub.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))  # type: ignore[union-attr]
        else:
            ec_pub.verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))  # type: ignore[union-attr,call-arg]


def test_a_batch_comes_back_in_order_whether_or_not_it_is_split(hsm: Hsm, keys: dict[str, bytes]) -> None:
    rsa_pub = serialization.load_der_public_key(keys["t-rsa"])
    for count in (0, 1, 7, 8, 50):  # from 8 on, the batch is spread over parallel sessions
        digests = [hashlib.sha256(f"batch {count} {i}".encode()).digest() for i in range(count)]
        signatures = hsm.sign_digests("t-rsa", digests, "sha256", SignatureScheme.RSA_PKCS1_V15)
        assert len(signatures) == count
        for digest, sig in zip(digests, signatures):
            rsa_pub.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))  # type: ignore[union-attr]
    with pytest.raises(HsmError, match="32 bytes"):  # one bad digest: nothing is signed
        hsm.sign_digests("t-rsa", [hashlib.sha256(b"ok").digest()] * 9 + [b"short"], "sha256", SignatureScheme.RSA_PKCS1_V15)


def test_a_batch_is_split_only_over_sessions_left_idle(hsm: Hsm, keys: dict[str, bytes],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """While other batches keep every parallel session busy, a long batch signs in its caller's
    thread: splitting it would only queue behind them (and spend CPU on hand-offs)."""
    parallel = hsm._sign_parallel
    if parallel < 2:
        pytest.skip("one core: batches are never split")
    real = hsm._sign_in_session
    release, entered, lock = threading.Event(), [0], threading.Lock()
    threads: list[str] = []
    caller = "the later batch"

    def spy(*args: object) -> list[bytes]:
        name = threading.current_thread().name
        if name == caller:
            threads.append(name)
        else:  # the first batch's sessions: held until the later batch is done
            with lock:
                entered[0] += 1
            release.wait(30)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(hsm, "_sign_in_session", spy)
    monkeypatch.setattr(hsm, "_idle_cores", lambda: float(parallel))  # the machine itself is idle
    digests = [hashlib.sha256(b"busy %d" % i).digest() for i in range(64)]
    first = threading.Thread(target=hsm.sign_digests, args=("t-rsa", digests, "sha256", SignatureScheme.RSA_PKCS1_V15))
    first.start()
    try:
        for _ in range(300):
            if entered[0] == parallel:
                break
            threading.Event().wait(0.01)
        assert entered[0] == parallel  # the first batch, alone, took every parallel session
        result: list[list[bytes]] = []
        later = threading.Thread(target=lambda: result.append(hsm.sign_digests(
            "t-rsa", digests[:50], "sha256", SignatureScheme.RSA_PKCS1_V15)), name=caller)
        later.start()
        later.join(10)
        assert not later.is_alive(), "the later batch waited for the busy sessions instead of signing"
        assert threads == [caller] and len(result[0]) == 50
    finally:
        release.set()
        first.join(30)
    rsa_pub = serialization.load_der_public_key(keys["t-rsa"])
    for digest, sig in zip(digests[:50], result[0]):
        rsa_pub.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))  # type: ignore[union-attr]


@pytest.mark.parametrize("idle", [0.0, 0.5, 1.0])
def test_a_batch_is_split_only_while_cores_are_idle(hsm: Hsm, keys: dict[str, bytes], monkeypatch: pytest.MonkeyPatch,
                                                    idle: float) -> None:
    """No other batch signs, but the machine's cores are busy (other requests' work): a long batch
    signs in its caller's thread, since helper threads would take those cores and cost CPU."""
    if hsm._sign_parallel < 2:
        pytest.skip("one core: batches are never split")
    real, threads = hsm._sign_in_session, []

    def spy(*args: object) -> list[bytes]:
        threads.append(threading.current_thread().name)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(hsm, "_sign_in_session", spy)
    monkeypatch.setattr(hsm, "_idle_cores", lambda: idle)
    digests = [hashlib.sha256(b"idle %d" % i).digest() for i in range(50)]
    signatures = hsm.sign_digests("t-rsa", digests, "sha256", SignatureScheme.RSA_PKCS1_V15)
    assert len(threads) == (1 if idle < 0.8 else 2)
    assert threads[0] == threading.current_thread().name
    rsa_pub = serialization.load_der_public_key(keys["t-rsa"])
    for digest, sig in zip(digests, signatures):
        rsa_pub.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))  # type: ignore[union-attr]


def test_errors_are_mapped_to_the_hsm_hierarchy(hsm: Hsm, keys: dict[str, bytes]) -> None:
    digest = hashlib.sha256(b"x").digest()
    with pytest.raises(KeyNotFound) as missing:
        hsm.sign_digest("no-such-key", digest, "sha256", SignatureScheme.RSA_PKCS1_V15)
    assert missing.value.code == "hsm_key_not_found"
    with pytest.raises(HsmError, match="32 bytes"):
        hsm.sign_digest("t-rsa", digest[:31], "sha256", SignatureScheme.RSA_PKCS1_V15)
    with pytest.raises(MechanismUnsupported):
        hsm.sign_digest("t-rsa", digest, "md5", SignatureScheme.RSA_PKCS1_V15)
    with pytest.raises(HsmError):
        hsm.sign_digest("t-ec256", digest, "sha256", SignatureScheme.RSA_PKCS1_V15)
    with pytest.raises(HsmError, match="already exists"):
        hsm.generate_key("t-rsa", KeyAlgorithm.EC_P256)


def test_delete_key(hsm: Hsm) -> None:
    hsm.generate_key("t-delete", KeyAlgorithm.EC_P256)
    assert hsm.key_exists("t-delete")
    hsm.delete_key("t-delete")
    assert not hsm.key_exists("t-delete")
    with pytest.raises(KeyNotFound):
        hsm.delete_key("t-delete")


def test_token_missing_and_wrong_pin_in_a_fresh_process(tmp_path, settings) -> None:  # type: ignore[no-untyped-def]
    """A process serves one token store (SoftHSM reads its config once), so this runs apart."""
    script = f"""
import sys
from pathlib import Path
from hsm.store import activate_token_store
from hsm.library import DEFAULT_MODULE, initialize_token
from hsm.token import Hsm
from hsm import TokenMissing, WrongPin
activate_token_store(Path({str(tmp_path)!r}))
try:
    Hsm(DEFAULT_MODULE, "kyso", "123456")
except TokenMissing as e:
    print("missing", e.code)
initialize_token(DEFAULT_MODULE, "kyso", "so-pin-0000", "user-pin-1111")
try:
    Hsm(DEFAULT_MODULE, "kyso", "wrong-pin")
except WrongPin as e:
    print("wrong", e.code)
h = Hsm(DEFAULT_MODULE, "kyso", "user-pin-1111")
h.ping()
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["missing hsm_token_missing", "wrong hsm_wrong_pin", "ok"]
