"""Raw hash signing and the checks made before the HSM sees a request."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, utils

from broker import credentials
from broker.runtime import Runtime
from signer import InvalidHash, InvalidParameters, PssParams, SignatureScheme, UnsupportedAlgorithm
from signer.algorithms import digest_name
from signer.raw import sign_hashes
from tests.conftest import Enrolled, load_credential


def test_pss_signatures_in_order(runtime: Runtime, enrolled: Enrolled) -> None:
    key = credentials.key_signer(runtime.hsm, load_credential(runtime, enrolled.rsa_pss))
    digests = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    sigs = sign_hashes(key, digests, "sha256", pss=PssParams("sha256", 32))
    public = serialization.load_der_public_key(key.certificate.public_key.dump())
    for d, s in zip(digests, sigs):
        public.verify(s, d, padding.PSS(padding.MGF1(hashes.SHA256()), 32), utils.Prehashed(hashes.SHA256()))  # type: ignore[union-attr]


def test_bad_input_is_refused_before_the_hsm(runtime: Runtime, enrolled: Enrolled) -> None:
    rsa = credentials.key_signer(runtime.hsm, load_credential(runtime, enrolled.rsa))
    ec = credentials.key_signer(runtime.hsm, load_credential(runtime, enrolled.ec))
    with pytest.raises(InvalidHash) as wrong_length:
        sign_hashes(rsa, [bytes(32), bytes(31)], "sha256")
    assert wrong_length.value.code == "invalid_hash"
    with pytest.raises(InvalidHash):
        sign_hashes(rsa, [], "sha256")
    with pytest.raises(UnsupportedAlgorithm):
        digest_name("1.2.3.4")
    with pytest.raises(UnsupportedAlgorithm):
        sign_hashes(rsa, [bytes(16)], "md5")
    with pytest.raises(UnsupportedAlgorithm):
        sign_hashes(ec, [bytes(32)], "sha256", scheme=SignatureScheme.RSA_PSS)
    # A salt longer than a 2048-bit key allows: SoftHSM would fail with CKR_GENERAL_ERROR.
    with pytest.raises(InvalidParameters, match="out of range") as salt:
        sign_hashes(rsa, [bytes(32)], "sha256", scheme=SignatureScheme.RSA_PSS, pss=PssParams("sha256", 300))
    assert salt.value.code == "invalid_parameters"
    with pytest.raises(InvalidParameters):
        PssParams.from_der(b"\x30\x03garbage")
    assert digest_name("2.16.840.1.101.3.4.2.1") == "sha256"
    assert PssParams.from_der(PssParams("sha384", 48).to_asn1().dump()) == PssParams("sha384", 48)
