"""A schema-driven fuzzer against the live server: every answer of /v1, /oauth2 and /csc is documented.

Requests are generated from the OpenAPI document (valid and invalid ones), sent with a valid
token, and each answer is checked: no server error, a documented status and content type, a body
that conforms to the documented schema, and invalid input refused.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from broker import clients
from broker.db.engine import transaction
from broker.runtime import Runtime
from tests.conftest import ACTOR, Enrolled

EXAMPLES = 20
"""Per operation and generation mode: about 30 operations stay well under a minute on two cores."""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


@pytest.fixture(scope="module")
def fuzz_token(runtime: Runtime, live_server: str, enrolled: Enrolled) -> str:
    with transaction(runtime.sessions) as s:
        clients.add_relying_system(s, ACTOR, "dvc-fuzz", ["U001"])
        client, secret = clients.add_client(s, ACTOR, "dvc-fuzz")
    answer = httpx.post(f"{live_server}/oauth2/token", data={"grant_type": "client_credentials"},
                        auth=(client.client_id, secret))
    return str(answer.json()["access_token"])


def test_answers_conform_to_the_document(live_server: str, runtime: Runtime, fuzz_token: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server}/openapi.json")
    schema = schema.include(path_regex=r"^/(v1|oauth2|csc)/").exclude(path_regex=r"^/v1/validations$")
    failures: list[str] = []
    operations, calls = set(), [0]
    limit = runtime.settings.rate_limit_per_minute
    runtime.settings.rate_limit_per_minute = 1_000_000  # the fuzzer's requests are to be refused for what they hold
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations.add(operation.label)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
                def call(case: schemathesis.Case) -> None:
                    calls[0] += 1
                    case.call_and_validate(headers={"Authorization": f"Bearer {fuzz_token}"}, checks=CHECKS,
                                           timeout=30)

                try:
                    call()
                except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every operation's, reported together
                    failures.append(f"{operation.label} ({mode.value}): {exc}")
    finally:
        runtime.settings.rate_limit_per_minute = limit
    assert not failures, "\n\n".join(failures)
    assert {"PUT /v1/documents", "POST /v1/requests", "POST /oauth2/token", "POST /csc/v2/signatures/signHash"} \
        <= operations and calls[0] > len(operations) * EXAMPLES, (calls, sorted(operations))
