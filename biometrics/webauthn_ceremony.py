"""WebAuthn registration and assertion (py_webauthn), user verification required on both sides.

Stateless: the caller keeps challenges, public keys and sign counts, and passes them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse, WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from biometrics.errors import BadProof, ReplayedCounter

# Restrict algorithms: Chrome would otherwise pick EdDSA.
ALGORITHMS = [COSEAlgorithmIdentifier.ECDSA_SHA_256, COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256]


@dataclass(frozen=True)
class RelyingParty:
    rp_id: str
    name: str
    origins: tuple[str, ...]


@dataclass(frozen=True)
class RegisteredAuthenticator:
    credential_id: str
    """base64url"""
    public_key: bytes
    sign_count: int


def registration_options(
    rp: RelyingParty, *, user_handle: bytes, user_name: str, display_name: str, challenge: bytes,
    exclude: Sequence[str] = (),
) -> str:
    options = generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=rp.name,
        user_id=user_handle,
        user_name=user_name,
        user_display_name=display_name,
        challenge=challenge,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c)) for c in exclude],
        supported_pub_key_algs=ALGORITHMS,
    )
    return options_to_json(options)


def verify_registration(rp: RelyingParty, credential_json: str, challenge: bytes) -> RegisteredAuthenticator:
    try:
        verified = verify_registration_response(
            credential=credential_json,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            require_user_verification=True,
            supported_pub_key_algs=ALGORITHMS,
        )
    except (InvalidRegistrationResponse, WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise BadProof(f"WebAuthn registration refused: {exc}") from exc
    return RegisteredAuthenticator(
        bytes_to_base64url(verified.credential_id), verified.credential_public_key, verified.sign_count
    )


def authentication_options(rp: RelyingParty, challenge: bytes, allow: Sequence[str]) -> str:
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=challenge,
        allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c)) for c in allow],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return options_to_json(options)


def verify_assertion(
    rp: RelyingParty, credential_json: str, challenge: bytes, authenticator: RegisteredAuthenticator
) -> int:
    """Verify an assertion (user verification required); return the new sign count."""
    try:
        verified = verify_authentication_response(
            credential=credential_json,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            credential_public_key=authenticator.public_key,
            credential_current_sign_count=authenticator.sign_count,
            require_user_verification=True,
        )
    except InvalidAuthenticationResponse as exc:
        if "sign count" in str(exc).lower():
            raise ReplayedCounter(f"WebAuthn sign count did not increase: {exc}") from exc
        raise BadProof(f"WebAuthn assertion refused: {exc}") from exc
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise BadProof(f"WebAuthn assertion refused: {exc}") from exc
    return verified.new_sign_count


def credential_id_of(credential_json: str) -> str:
    """The ``id`` a browser's credential JSON names (to find the stored authenticator)."""
    import json

    try:
        value = json.loads(credential_json)["id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadProof("malformed WebAuthn credential JSON") from exc
    if not isinstance(value, str):
        raise BadProof("malformed WebAuthn credential JSON")
    return value
