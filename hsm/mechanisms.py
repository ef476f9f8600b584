"""What the token computes inside one session: key lookup, key pair generation, digest signing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pkcs11
from asn1crypto import keys as asn1_keys
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_ec_public_key, encode_ecdsa_signature, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from hsm.errors import DeviceError, HsmError, KeyNotFound, MechanismUnsupported
from hsm.keys import KeyAlgorithm, SignatureScheme
from hsm.library import DEVICE_ERRORS

# DER prefixes of DigestInfo (RFC 8017 §9.2, note 1), followed by the digest.
_DIGEST_INFO_PREFIX = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
_PSS_HASH = {
    "sha256": (Mechanism.SHA256, pkcs11.MGF.SHA256),
    "sha384": (Mechanism.SHA384, pkcs11.MGF.SHA384),
    "sha512": (Mechanism.SHA512, pkcs11.MGF.SHA512),
}
DIGEST_SIZE = {"sha256": 32, "sha384": 48, "sha512": 64}


def find_key(session: Any, cls: ObjectClass, ident: bytes, missing_ok: bool = False) -> Any:
    try:
        return session.get_key(object_class=cls, id=ident)
    except p11.NoSuchKey as exc:
        if missing_ok:
            return None
        raise KeyNotFound(f"no key with id {ident.decode(errors='replace')!r}") from exc
    except p11.MultipleObjectsReturned as exc:
        raise HsmError(f"several keys with id {ident.decode(errors='replace')!r}") from exc


def generate_keypair(session: Any, key_id: str, algorithm: KeyAlgorithm, label: str | None) -> Any:
    """A stored key pair whose private half is sensitive and never extractable; its public half."""
    ident = key_id.encode()
    private_template = {
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
        Attribute.PRIVATE: True,
        Attribute.TOKEN: True,
    }
    public_template = {Attribute.VERIFY: True, Attribute.TOKEN: True}
    try:
        if algorithm.is_rsa:
            public, _ = session.generate_keypair(
                KeyType.RSA,
                algorithm.rsa_bits,
                id=ident,
                label=label or key_id,
                store=True,
                public_template=public_template,
                private_template=private_template,
            )
        else:
            params = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters(algorithm.curve)},
                local=True,
            )
            public, _ = params.generate_keypair(
                id=ident,
                label=label or key_id,
                store=True,
                public_template=public_template,
                private_template=private_template,
            )
    except (p11.MechanismInvalid, p11.KeySizeRange, p11.DomainParamsInvalid, p11.FunctionNotSupported) as exc:
        raise MechanismUnsupported(f"the token cannot generate {algorithm.value} keys") from exc
    except DEVICE_ERRORS as exc:
        raise DeviceError(f"key generation failed: {type(exc).__name__}") from exc
    return public


def sign_with_key(key: Any, key_id: str, digests: Sequence[bytes], hash_name: str, scheme: SignatureScheme,
                  pss_salt_length: int | None) -> list[bytes]:
    """Sign digests with a private key object; ECDSA comes back as DER ``ECDSA-Sig-Value``."""
    try:
        if scheme is SignatureScheme.RSA_PKCS1_V15:
            prefix = _DIGEST_INFO_PREFIX[hash_name]
            return [bytes(key.sign(prefix + d, mechanism=Mechanism.RSA_PKCS)) for d in digests]
        if scheme is SignatureScheme.RSA_PSS:
            hash_mech, mgf = _PSS_HASH[hash_name]
            salt = DIGEST_SIZE[hash_name] if pss_salt_length is None else pss_salt_length
            return [bytes(key.sign(d, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=(hash_mech, mgf, salt)))
                    for d in digests]
        return [bytes(encode_ecdsa_signature(bytes(key.sign(d, mechanism=Mechanism.ECDSA)))) for d in digests]
    except (p11.MechanismInvalid, p11.KeyTypeInconsistent, p11.FunctionNotSupported) as exc:
        raise MechanismUnsupported(f"{scheme.value} is not usable with key {key_id!r}") from exc
    except (p11.MechanismParamInvalid, p11.DataLenRange, p11.DataInvalid) as exc:
        raise HsmError(f"the HSM rejected the {scheme.value} parameters") from exc
    except DEVICE_ERRORS as exc:
        raise DeviceError(f"signing failed: {type(exc).__name__}") from exc


def spki(public: Any, algorithm: KeyAlgorithm) -> bytes:
    if algorithm.is_rsa:
        rsa_der = encode_rsa_public_key(public)
        info = asn1_keys.PublicKeyInfo(
            {
                "algorithm": {"algorithm": "rsa", "parameters": None},
                "public_key": asn1_keys.RSAPublicKey.load(rsa_der),
            }
        )
        return bytes(info.dump())
    return bytes(encode_ec_public_key(public))
