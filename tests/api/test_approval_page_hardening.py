"""The approval page against other sites and curious callers: headers, sign-in options, Origin."""

from __future__ import annotations

import base64
import hashlib
import re
import time

import httpx
import pytest

from api import approval_page
from api.approval_page import PAGE
from broker import credentials
from broker.approvals import token_hash
from broker.db.engine import transaction
from broker.db.models import ActivationCode, RequestState
from broker.lifecycle import signing_requests
from broker.runtime import Runtime
from hsm import KeyAlgorithm
from tests.api.test_authenticator_lifecycle import SoftAuthenticator, browser, new_user, page_origin, register
from tests.conftest import ACTOR, Enrolled
from tests.support import activation_code


def test_the_page_carries_a_strict_policy_and_cannot_be_framed(live_server: str) -> None:
    page = httpx.get(f"{live_server}/approve")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'" and directives["form-action"] == "'none'"
    assert directives["connect-src"] == "'self'"
    script = re.search(r"<script>(.*?)</script>", PAGE.read_text(encoding="utf-8"), re.DOTALL)
    assert script is not None
    expected = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert directives["script-src"] == f"'sha256-{expected}'"  # its own script only: no 'unsafe-inline'
    assert "unsafe" not in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/approve/api/requests", "/v1/requests/none", "/healthz", "/nowhere"])
def test_every_answer_is_unframeable_and_unsniffable(live_server: str, path: str) -> None:
    answer = httpx.get(f"{live_server}{path}")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


# -- sign-in options tell nothing about who is enrolled --------------------------------------------------


def _options(client: httpx.Client, username: str) -> httpx.Response:
    return client.post("/approve/api/login/options", json={"username": username})


def _shape(value: object) -> object:
    """The JSON's structure and string lengths, without values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items()) if k != "challenge"}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return (type(value).__name__, len(value) if isinstance(value, str) else value)


def test_sign_in_options_are_alike_for_unknown_unenrolled_and_enrolled_users(
        runtime: Runtime, live_server: str, enrolled: Enrolled) -> None:
    enrolled_user, bare_user = new_user(runtime, enrolled), new_user(runtime, enrolled)
    authenticator = SoftAuthenticator(page_origin(live_server))
    with browser(live_server) as client:
        assert register(client, authenticator, activation_code(runtime, enrolled_user)).status_code == 200
        answers = {name: _options(client, name) for name in (enrolled_user, bare_user, "nobody-" + enrolled_user[3:])}
        assert {a.status_code for a in answers.values()} == {200}
        shapes = [_shape(a.json()) for a in answers.values()]
        assert shapes[0] == shapes[1] == shapes[2]
        listed = {n: [c["id"] for c in a.json()["options"]["allowCredentials"]] for n, a in answers.items()}
        assert listed[enrolled_user] == [authenticator.id]
        # The stand-in ids are stable, so asking twice does not give the game away.
        for name in (bare_user, "nobody-" + enrolled_user[3:]):
            again = _options(client, name).json()["options"]["allowCredentials"]
            assert [c["id"] for c in again] == listed[name]
        assert listed[bare_user] != listed["nobody-" + enrolled_user[3:]]

        # Finishing a sign-in fails alike too: a stranger's key against a real user and an unknown one.
        stranger = SoftAuthenticator(page_origin(live_server))
        refusals = []
        for name in (enrolled_user, "nobody-" + enrolled_user[3:]):
            start = _options(client, name).json()
            refusals.append(client.post("/approve/api/login/verify", json={
                "challenge_id": start["challenge_id"], "credential": stranger.get(start["options"])}))
        assert [r.status_code for r in refusals] == [403, 403]
        assert refusals[0].json()["code"] == refusals[1].json()["code"] == "confirmation_invalid"
        assert refusals[0].json()["detail"] == refusals[1].json()["detail"]


# -- state-changing calls only from the page's own origin ---------------------------------------------


POSTS = ["/approve/api/register/options", "/approve/api/register/verify", "/approve/api/login/options",
         "/approve/api/login/verify", "/approve/api/logout", "/approve/api/requests/x/options",
         "/approve/api/requests/x/approve", "/approve/api/requests/x/refuse"]


def test_every_post_of_the_page_is_listed_here() -> None:
    routes = {r.path.replace("{request_id}", "x") for r in approval_page.router.routes
              if "POST" in getattr(r, "methods", ())}
    assert routes == set(POSTS)


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Referer": "https://evil.example/approve"},
    {"Origin": "http://localhost.evil.example"},
    {},
], ids=["foreign-origin", "null-origin", "foreign-referer", "lookalike-origin", "no-origin"])
def test_a_post_from_another_origin_is_refused(live_server: str, path: str, headers: dict[str, str]) -> None:
    answer = httpx.post(f"{live_server}{path}", json={}, headers=headers)
    assert answer.status_code == 403
    assert answer.json()["code"] == "origin_refused"
    assert len(answer.json()["detail"]) < 300


def test_the_pages_own_origin_or_referer_is_accepted(live_server: str) -> None:
    own = page_origin(live_server)
    for headers in ({"Origin": own}, {"Referer": own + "/approve"}):
        answer = httpx.post(f"{live_server}/approve/api/login/options", json={"username": "lan"}, headers=headers)
        assert answer.status_code == 200, answer.text


def test_a_forged_cross_site_refusal_changes_nothing(runtime: Runtime, live_server: str, enrolled: Enrolled) -> None:
    """The signer's own cookie, sent along by a page of another site, decides nothing and uses no code."""
    username = new_user(runtime, enrolled)
    with transaction(runtime.sessions) as s:
        credential = credentials.enroll(s, ACTOR, runtime.hsm, runtime.ca("viettel"), username=username,
                                        key_algorithm=KeyAlgorithm.EC_P256)
        credential_id = credential.id
    authenticator = SoftAuthenticator(page_origin(live_server))
    with browser(live_server) as client:
        assert register(client, authenticator, activation_code(runtime, username)).status_code == 200
        cookie = client.cookies.get("kyso_session")
    assert cookie
    doc = signing_requests.DocumentToSign(hashlib.sha256(str(time.time()).encode()).digest(), "UNC-CSRF", "1 VND")
    with transaction(runtime.sessions) as s:
        credential = credentials.get_credential(s, credential_id)
        request_id = signing_requests.create(s, runtime.settings, ACTOR, credential, [doc], relying_system="dvc",
                                     provider=runtime.ca(credential.provider)).id
    code = activation_code(runtime, username)

    forged = {"Origin": "https://evil.example", "Cookie": f"kyso_session={cookie}"}
    answer = httpx.post(f"{live_server}/approve/api/requests/{request_id}/refuse", headers=forged)
    assert answer.status_code == 403 and answer.json()["code"] == "origin_refused"
    answer = httpx.post(f"{live_server}/approve/api/register/options", json={"activation_code": code}, headers=forged)
    assert answer.status_code == 403 and answer.json()["code"] == "origin_refused"
    with transaction(runtime.sessions) as s:
        assert signing_requests.get(s, request_id).state is RequestState.PENDING
        assert s.query(ActivationCode).filter_by(code_hash=token_hash(code)).one().used_at is None

    # The same cookie from the page itself is answered: only the origin made the difference.
    own = {"Origin": page_origin(live_server), "Cookie": f"kyso_session={cookie}"}
    answer = httpx.post(f"{live_server}/approve/api/requests/{request_id}/refuse", headers=own)
    assert answer.status_code == 200, answer.text
    with transaction(runtime.sessions) as s:
        assert signing_requests.get(s, request_id).state is RequestState.REJECTED
