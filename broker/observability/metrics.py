"""Prometheus metrics, in one process or summed over several (multi-process mode).

prometheus-client picks its storage when it is first imported: with ``PROMETHEUS_MULTIPROC_DIR``
set, every process writes its own files in that directory and ``/metrics`` sums them (see
:mod:`broker.observability.multiprocess` for who sets it up).

Label values are closed sets (unknown ones count as ``other``): an id or a free text in a label
would make a new series per request.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from broker.observability.multiprocess import multiprocess_dir

FORMATS = frozenset({"raw", "cades", "pades"})
LEVELS = frozenset({"B-B", "B-T", "B-LT", "B-LTA"})
SIGNATURE_OUTCOMES = frozenset({"signed", "failed", "rejected", "expired", "cancelled"})
WEBHOOK_OUTCOMES = frozenset({"delivered", "retry", "failed", "refused"})
HSM_ERROR_CODES = frozenset({
    "hsm_error", "hsm_token_missing", "hsm_wrong_pin", "hsm_key_not_found", "hsm_mechanism_unsupported",
    "hsm_device_error",
})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"

HTTP_REQUESTS = Counter("kyso_http_requests", "HTTP requests by route template and status.",
                        ["method", "route", "status"])
HTTP_SECONDS = Histogram("kyso_http_request_duration_seconds", "HTTP request duration by route template.",
                         ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
SIGNATURES = Counter("kyso_signatures", "Signatures by format, level and outcome.", ["format", "level", "outcome"])
CONFIRMATION_SECONDS = Histogram("kyso_confirmation_seconds", "From request creation to the signer's decision.",
                                 buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600))
HSM_SIGN_SECONDS = Histogram("kyso_hsm_sign_seconds", "One signature in the HSM.",
                             buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
HSM_ERRORS = Counter("kyso_hsm_errors", "HSM errors by code.", ["code"])
WEBHOOKS = Counter("kyso_webhook_deliveries", "Webhook delivery attempts by outcome.", ["outcome"])


def _closed(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else "other"


def record_signature(format: str, level: str | None, outcome: str) -> None:  # noqa: A002 - the label's name
    """Count one signature (or one document) by ``raw|cades|pades``, ``B-B..B-LTA`` (None: raw) and
    ``signed|failed|rejected|expired|cancelled``."""
    SIGNATURES.labels(_closed(format, FORMATS), "none" if level is None else _closed(level, LEVELS),
                      _closed(outcome, SIGNATURE_OUTCOMES)).inc()


def observe_confirmation(seconds: float) -> None:
    """How long the signer took to approve or refuse."""
    CONFIRMATION_SECONDS.observe(max(seconds, 0.0))


def observe_hsm_sign(seconds: float) -> None:
    HSM_SIGN_SECONDS.observe(seconds)


def record_hsm_error(code: str) -> None:
    HSM_ERRORS.labels(_closed(code, HSM_ERROR_CODES)).inc()


def record_webhook(outcome: str) -> None:
    """One delivery attempt: ``delivered``, ``retry`` (failed, will be retried), ``failed`` (gave up), ``refused``."""
    WEBHOOKS.labels(_closed(outcome, WEBHOOK_OUTCOMES)).inc()


def record_http(method: str, route: str, status: int, seconds: float) -> None:
    """``route`` is a template or :data:`UNMATCHED_ROUTE`; a client's odd method counts as ``other``."""
    HTTP_REQUESTS.labels(_closed(method, METHODS), route, str(status)).inc()
    HTTP_SECONDS.labels(route).observe(seconds)


# -- exposition and multi-process bookkeeping ---------------------------------------------------


def render(directory: Path | None = None) -> tuple[bytes, str]:
    """The text exposition and its content type: summed over processes when a directory is in use."""
    directory = directory or multiprocess_dir()
    if directory is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return generate_latest(registry), CONTENT_TYPE_LATEST
