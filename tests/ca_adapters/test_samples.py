"""Request and reply bodies written down from the providers' public material, replayed.

Each file under ``samples/<provider>/`` is one body as the public material shows it (its ``source``:
``doc`` a provider's document, ``code`` integrators' code, ``2nd`` a third-party summary, ``modelled``
where nothing is public). Replies are read by the adapter's parser to the documented outcome; the
emulator's live requests and replies must carry every documented field with its documented type. A
change that drifts from the published shapes fails here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from broker.runtime import Runtime
from ca_adapters.emulator.provider_apis.misa import misa_callback_body, misa_otp
from ca_adapters.emulator.provider_apis.viettel import viettel_callback_body
from ca_adapters.emulator.provider_apis.vnpt import vnpt_callback_body
from ca_adapters.emulator.server import EmulatorSet
from ca_adapters.remote_clients.misa import (
    MisaClient,
    parse_misa_certificates,
    parse_misa_signing_status,
    parse_misa_webhook,
)
from ca_adapters.remote_clients.nacencomm import NacencommClient, parse_nacencomm_result
from ca_adapters.remote_clients.viettel import parse_viettel_callback, parse_viettel_certificates, parse_viettel_status
from ca_adapters.remote_clients.vnpt import parse_vnpt_callback, parse_vnpt_certificates, parse_vnpt_status
from ca_adapters.remote_signing import (
    DigestToSign,
    ProviderReplyMalformed,
    RemoteResult,
    RemoteStatus,
    choose_certificate,
)

SAMPLES = Path(__file__).parent / "samples"
PARSERS = {
    "vnpt_status": parse_vnpt_status, "vnpt_callback": lambda b: parse_vnpt_callback(b).result,
    "viettel_status": parse_viettel_status, "viettel_callback": lambda b: parse_viettel_callback(b).result,
    "misa_status": parse_misa_signing_status, "misa_webhook": lambda b: parse_misa_webhook(b).result,
    "nacencomm_result": parse_nacencomm_result,
}
SIG = base64.b64encode(bytes(range(256))).decode()


def _samples(kind: str | None = None) -> list[Any]:
    files = sorted(SAMPLES.glob("*/*.json"))
    return [pytest.param(f, id=f"{f.parent.name}/{f.stem}") for f in files
            if kind is None or json.loads(f.read_text())["kind"] == kind]


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name in sorted(values, key=len, reverse=True):
            value = value.replace(f"${name}", values[name])
        return value
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


def fits(sample: Any, live: Any, where: str = "$") -> None:
    """Every field of ``sample`` is in ``live`` with the same JSON type (null in the sample: any)."""
    if sample is None or live is None:
        return
    if isinstance(sample, dict):
        assert isinstance(live, dict), f"{where}: expected an object, got {live!r}"
        for key, value in sample.items():
            assert key in live, f"{where}.{key} missing (has {sorted(live)})"
            fits(value, live[key], f"{where}.{key}")
    elif isinstance(sample, list):
        assert isinstance(live, list), f"{where}: expected a list, got {live!r}"
        if sample and live:
            fits(sample[0], live[0], f"{where}[0]")
    else:
        assert type(sample) is type(live), f"{where}: {type(sample).__name__} documented, {type(live).__name__} answered"


def test_every_sample_names_its_public_source() -> None:
    for file in SAMPLES.glob("*/*.json"):
        sample = json.loads(file.read_text())
        assert sample["source"] in ("doc", "code", "2nd", "modelled"), file
        assert sample["kind"] in ("request", "reply", "callback", "answer", "text"), file


@pytest.mark.parametrize("file", [p for p in _samples() if "expect" in json.loads(p.values[0].read_text())])
def test_parsers_read_each_sample_to_its_documented_outcome(file: Path) -> None:
    sample = json.loads(file.read_text())
    body = _fill(sample["body"], {"SIG": SIG})
    result = PARSERS[sample["parser"]](body)
    assert isinstance(result, RemoteResult)
    assert result.status is RemoteStatus(sample["expect"]), result
    assert not result.anomaly
    if result.status is RemoteStatus.SUCCESS:
        assert result.signatures == (bytes(range(256)),)


def test_parsers_never_read_a_drifted_reply_as_signed() -> None:
    # The bugs of the first reading: an integer map missing the string "1", an empty quoted string.
    assert parse_viettel_status({"status": "1", "signatures": [SIG]}).status is RemoteStatus.SUCCESS
    assert parse_viettel_status({"status": 1, "signatures": [SIG]}).status is RemoteStatus.SUCCESS
    assert parse_viettel_status({"status": "7777"}).anomaly == "unknown_status"
    assert parse_nacencomm_result('""').status is RemoteStatus.PENDING
    assert parse_nacencomm_result('"\\"\\""').status is RemoteStatus.PENDING  # quoted twice
    assert parse_vnpt_status({"status_code": 200, "message": "WHATEVER", "data": {}}).anomaly == "unknown_status"
    assert parse_misa_signing_status({"status": {"errorCode": 0}, "data": {"status": "NEW"}}).status \
        is RemoteStatus.PENDING
    with pytest.raises(ProviderReplyMalformed):
        parse_vnpt_status({"status_code": 200, "message": "SUCCESS", "data": {"signatures": None}})
    with pytest.raises(ProviderReplyMalformed):
        parse_nacencomm_result('"<html>"')


def _cert_values(user: Any) -> dict[str, str]:
    def b64(cert: Any) -> str:
        return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

    values = {"CERT": b64(user.certificate), "CA": b64(user.chain[0]), "ROOT": b64(user.chain[1]),
              "SERIAL": f"{user.certificate.serial_number:x}", "SIG": SIG}
    if user.seal is not None:
        values.update(SEAL=b64(user.seal.certificate), SEAL_SERIAL=f"{user.seal.certificate.serial_number:x}")
    return values


def test_certificate_samples_choose_the_persons_certificate(emulators: EmulatorSet) -> None:
    user = emulators.state("vnpt").add_user("0790887001234", "Hồ Thị Thu", "Sở Tài chính (TEST)", seal=True)
    values = _cert_values(user)
    for name, parse in [("vnpt/get_certificate", parse_vnpt_certificates),
                        ("viettel/certificates_info", parse_viettel_certificates),
                        ("misa/certificates", parse_misa_certificates)]:
        body = _fill(json.loads((SAMPLES / f"{name}.reply.json").read_text())["body"], values)
        chosen = choose_certificate(user.user_id, parse(body))
        assert chosen.chain_der[0] == base64.b64decode(values["CERT"]), name  # never the seal listed first


def _record(client: Any, exchanges: list[tuple[str, Any, Any]]) -> None:
    def hook(response: httpx.Response) -> None:
        response.read()
        try:
            sent = json.loads(response.request.content) if response.request.content else None
        except ValueError:
            sent = None
        try:
            answered = response.json()
        except ValueError:
            answered = response.text
        exchanges.append((response.request.url.path, sent, answered))

    client.http.event_hooks["response"].append(hook)


@pytest.mark.parametrize("provider", ["vnpt", "viettel", "misa", "nacencomm"])
def test_the_emulator_and_the_adapter_exchange_the_documented_shapes(runtime: Runtime, emulator_reset: EmulatorSet,
                                                                     provider: str) -> None:
    state = emulator_reset.state(provider)
    user = state.add_user(f"0790888{len(provider)}01234", "Mai Văn Sơn", "Kho bạc (TEST)", seal=provider == "vnpt")
    client = runtime.ca(provider).remote_signing()
    exchanges: list[tuple[str, Any, Any]] = []
    _record(client, exchanges)
    if isinstance(client, MisaClient):
        client.login(user.user_id, user.password, misa_otp(user))
    credential = client.credential(user.user_id, str(user.idcts) if isinstance(client, NacencommClient) else "")
    transaction_id = client.start(credential, [DigestToSign("d1", "UNC 01", hashlib.sha256(b"s").digest())], "Ký UNC")
    deadline = time.monotonic() + 10
    while (result := client.poll(credential, transaction_id)).status is RemoteStatus.PENDING:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert result.status is RemoteStatus.SUCCESS
    checked = 0
    for file in sorted((SAMPLES / provider).glob("*.json")):
        sample = json.loads(file.read_text())
        if sample["kind"] not in ("request", "reply", "text") or "path" not in sample:
            continue
        position = 1 if sample["kind"] == "request" else 2
        path = sample["path"]  # a path ending in "/" stands for the calls under it
        live = [x for x in exchanges if x[0].endswith(path) or (path.endswith("/") and path in x[0])]
        if "expect" in sample:
            live = [x for x in live if PARSERS[sample["parser"]](x[2]).status.value == sample["expect"]]
        assert live, f"{file.name}: no exchange at {sample['path']}"
        fits(sample["body"], live[-1][position], file.name)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize(("provider", "builder", "parser"), [
    ("vnpt", vnpt_callback_body, "vnpt_callback"),
    ("viettel", viettel_callback_body, "viettel_callback"),
    ("misa", misa_callback_body, "misa_webhook"),
])
def test_the_emulators_call_back_in_the_documented_shape(runtime: Runtime, emulator_reset: EmulatorSet,
                                                         provider: str, builder: Any, parser: str) -> None:
    state = emulator_reset.state(provider)
    user = state.add_user(f"0790889{len(provider)}01234", "Tô Văn Bình")
    tx = state.start(user.user_id, [("d1", hashlib.sha256(b"c").digest())])
    time.sleep(state.approve_after + 0.05)
    body = builder(state, state.get(tx.id))
    [file] = [f for f in (SAMPLES / provider).glob("*.json") if json.loads(f.read_text())["kind"] == "callback"]
    fits(json.loads(file.read_text())["body"], body, file.name)
    assert PARSERS[parser](body).status is RemoteStatus.SUCCESS
    answer = SAMPLES / provider / ("webhook.answer.json" if provider == "misa" else "callback.answer.json")
    if answer.exists():  # what kyso answers the provider
        documented = json.loads(answer.read_text())["body"]
        ours = runtime.ca(provider).remote_signing().callback_reply(True, "")
        fits(documented, ours, answer.name)
        assert {k: ours[k] for k in documented if k == "status_code"} == {k: v for k, v in documented.items()
                                                                          if k == "status_code"}
