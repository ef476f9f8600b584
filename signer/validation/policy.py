"""The caller's options turned into pyHanko's validation policy: anchors, hard-fail revocation, fetching, time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyhanko.sign.validation.policy_decl import (
    CertificateFetchingRule,
    LocalKnowledge,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import REQUIRE_REVINFO, CertRevTrustPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from signer import ltv
from signer.validation.trust import TrustStore


@dataclass(frozen=True)
class ValidationOptions:
    trust: TrustStore
    at: datetime | None = None
    """Validate as at this time; None: now."""
    fetch_revocation: bool = False
    """Fetch OCSP responses and CRLs named in the certificates when the document lacks them."""


def validation_timing(options: ValidationOptions, now: datetime) -> ValidationTimingInfo:
    return ValidationTimingInfo(validation_time=now, best_signature_time=now,
                                point_in_time_validation=options.at is not None)


def signature_spec(options: ValidationOptions, local: LocalKnowledge | None = None) -> SignatureValidationSpec:
    cert_policy = CertValidationPolicySpec(
        trust_manager=SimpleTrustManager.build(trust_roots=list(options.trust.anchors)),
        revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO))
    # Certificates are never fetched from URLs a document names: a chain comes with it or from the store.
    gathering = RevocationInfoGatheringSpec(
        online_fetching_rule=RevinfoOnlineFetchingRule.NO_HISTORICAL_FETCH if options.fetch_revocation
        else RevinfoOnlineFetchingRule.LOCAL_ONLY,
        certificate_fetching_rule=CertificateFetchingRule.NEVER_FETCH)
    return SignatureValidationSpec(cert_validation_policy=cert_policy, revinfo_gathering_policy=gathering,
                                   local_knowledge=local or LocalKnowledge())


def with_local(spec: SignatureValidationSpec, data: ltv.ValidationData) -> SignatureValidationSpec:
    """The same policy, knowing the certificates and revocation data the document carries."""
    local = LocalKnowledge(known_certs=list(data.certificates),
                           known_crls=[CRLContainer(c) for c in data.crls],
                           known_ocsps=[OCSPContainer(o) for o in data.ocsps])
    return SignatureValidationSpec(cert_validation_policy=spec.cert_validation_policy,
                                   revinfo_gathering_policy=spec.revinfo_gathering_policy, local_knowledge=local)


def legacy_context(options: ValidationOptions, data: ltv.ValidationData, moment: datetime | None
                   ) -> ValidationContext:
    """The same policy for pyHanko's older API, which PDF document timestamps still go through."""
    return ValidationContext(trust_roots=list(options.trust.anchors), other_certs=data.certificates,
                             crls=data.crls, ocsps=data.ocsps, allow_fetching=options.fetch_revocation,
                             revocation_mode="hard-fail", moment=moment)
