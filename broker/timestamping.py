"""CSC ``signatures/timestamp``: an RFC 3161 token from the configured provider's TSA.

kyso builds the TimeStampReq itself so that the client's nonce goes to the TSA, then checks that
the answer is granted and covers exactly the client's hash and nonce before handing it back.
"""

from __future__ import annotations

import secrets

import httpx
from asn1crypto import algos, tsp

from broker.errors import InvalidInput, KysoError
from signer.algorithms import DIGEST_OIDS, check_digest


class TimestampNotOffered(InvalidInput):
    code = "timestamp_not_offered"


class TsaUnavailable(KysoError):
    """The TSA did not answer, refused, or answered something that is not a token for this hash."""

    code = "tsa_unavailable"


def parse_nonce(value: str | None) -> int:
    """The client's nonce (hexadecimal, as CSC clients send it), else a random 64-bit one."""
    if value is None:
        return secrets.randbits(64)
    try:
        nonce = int(value, 16)
    except ValueError as exc:
        raise InvalidInput("nonce must be hexadecimal") from exc
    if not 0 < nonce < 1 << 160:
        raise InvalidInput("nonce must be a positive number of at most 160 bits")
    return nonce


def timestamp(tsa_url: str | None, digest: bytes, hash_oid: str, nonce: int, timeout: float) -> bytes:
    """A DER TimeStampToken (CMS ContentInfo) over ``digest``."""
    if not tsa_url:
        raise TimestampNotOffered("no TSA is configured on this service")
    if hash_oid not in DIGEST_OIDS:
        raise InvalidInput(f"unsupported hash algorithm {hash_oid}")
    check_digest(digest, DIGEST_OIDS[hash_oid])
    request = tsp.TimeStampReq({
        "version": "v1", "nonce": nonce, "cert_req": True,
        "message_imprint": {"hash_algorithm": algos.DigestAlgorithm({"algorithm": DIGEST_OIDS[hash_oid]}),
                            "hashed_message": digest}})
    try:
        reply = httpx.post(tsa_url, content=request.dump(), timeout=timeout,
                           headers={"Content-Type": "application/timestamp-query"})
    except httpx.HTTPError as exc:
        raise TsaUnavailable(f"the TSA did not answer: {type(exc).__name__}") from exc
    if reply.status_code != 200:
        raise TsaUnavailable(f"the TSA answered HTTP {reply.status_code}")
    try:
        response = tsp.TimeStampResp.load(reply.content)
        status = response["status"]["status"].native
        token = response["time_stamp_token"]
        info = token["content"]["encap_content_info"]["content"].parsed
        imprint = info["message_imprint"]
        matches = (imprint["hashed_message"].native == digest and info["nonce"].native == nonce
                   and imprint["hash_algorithm"]["algorithm"].native == DIGEST_OIDS[hash_oid])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TsaUnavailable("the TSA's answer is not a timestamp response") from exc
    if status not in ("granted", "granted_with_mods"):
        raise TsaUnavailable(f"the TSA refused: {status}")
    if not matches:
        raise TsaUnavailable("the TSA's token does not cover this hash and nonce")
    return bytes(token.dump())
