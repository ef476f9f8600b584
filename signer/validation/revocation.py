"""The revocation data (CRLs, OCSP responses) a validation used, each marked embedded or fetched."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from typing import Any

from asn1crypto import cms, crl, ocsp
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.ltv.poe import ValidationObjectType

from signer import ltv
from signer.validation_report import RevocationInfo


def revocation_objects(result: Any, embedded: list[Any]) -> list[RevocationInfo]:
    """From an AdES result's validation objects; ``embedded``: the document's own CRLs and OCSP responses."""
    infos = []
    for vo in result.validation_objects or []:
        if vo.object_type is ValidationObjectType.CRL:
            infos.append(_crl_info(vo.value.crl_data))
        elif vo.object_type is ValidationObjectType.OCSP_RESPONSE:
            infos.append(_ocsp_info(vo.value.ocsp_response_data))
    return _sourced(infos, embedded)


def revocation_from(context: ValidationContext, embedded: list[Any]) -> list[RevocationInfo]:
    """From a validation context, where pyHanko's result keeps no validation objects."""
    return _sourced([*map(_crl_info, context.crls), *map(_ocsp_info, context.ocsps)], embedded)


def cms_revocation(signed_data: cms.SignedData) -> list[Any]:
    data = ltv.embedded_validation_data(signed_data)
    return [*data.crls, *data.ocsps]


def _crl_info(data: crl.CertificateList) -> RevocationInfo:
    return RevocationInfo("CRL", "", data["tbs_cert_list"]["issuer"].human_friendly,
                          data["tbs_cert_list"]["this_update"].native, hashlib.sha256(data.dump()).hexdigest())


def _ocsp_info(data: ocsp.OCSPResponse) -> RevocationInfo:
    basic = data["response_bytes"]["response"].parsed
    responder = basic["tbs_response_data"]["responder_id"]
    who = responder.chosen.human_friendly if responder.name == "by_name" else responder.chosen.native.hex()
    return RevocationInfo("OCSP", "", who, basic["tbs_response_data"]["produced_at"].native,
                          hashlib.sha256(data.dump()).hexdigest())


def _sourced(infos: Iterable[RevocationInfo], embedded: list[Any]) -> list[RevocationInfo]:
    embedded_digests = {hashlib.sha256(o.dump()).hexdigest() for o in embedded}
    out: dict[str, RevocationInfo] = {}
    for info in infos:
        source = "embedded" if info.sha256 in embedded_digests else "fetched"
        out.setdefault(info.sha256, dataclasses.replace(info, source=source))
    return list(out.values())
