"""The database work of each call in a signing request's life, counted per call: statements and
transactions are most of what a request costs the server on PostgreSQL (each one a round trip and
the driver's own work), so each call has a budget that a change must not quietly exceed."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from broker.observability import request_id
from broker.runtime import Runtime
from demo.documents import write_payment_order_pdf
from tests.conftest import Enrolled
from tests.support import AutoApprover, bearer_http, relying_system_client, wait_done


class PerCall:
    """Statements and transactions each HTTP call ran, by the request id it was sent with. A
    transaction is a BEGIN … COMMIT/ROLLBACK the database sees; a bare read is one statement."""

    def __init__(self) -> None:
        self.statements: Counter[str] = Counter()
        self.transactions: Counter[str] = Counter()

    def statement(self, _conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        rid = request_id.current.get()
        if rid and not sql.startswith("BEGIN"):  # SQLite's own BEGIN is counted as the transaction
            self.statements[rid] += 1

    def begin(self, conn: Any) -> None:
        rid = request_id.current.get()
        options = conn.get_execution_options()
        if rid and not options.get("kyso_bare_statement") and options.get("isolation_level") != "AUTOCOMMIT":
            self.transactions[rid] += 1


@pytest.fixture(scope="module")
def counted(runtime: Runtime) -> Iterator[PerCall]:
    counts = PerCall()
    event.listen(runtime.engine, "before_cursor_execute", counts.statement)
    event.listen(runtime.engine, "begin", counts.begin)
    yield counts
    event.remove(runtime.engine, "before_cursor_execute", counts.statement)
    event.remove(runtime.engine, "begin", counts.begin)


@pytest.fixture(scope="module")
def api(runtime: Runtime, live_server: str, phones: AutoApprover) -> Iterator[httpx.Client]:
    with bearer_http(live_server, *relying_system_client(runtime, "dvc-budget")) as http:
        yield http


def _call(api: httpx.Client, counts: PerCall, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, int, int]:
    rid = uuid.uuid4().hex
    response = api.request(method, url, headers={**kwargs.pop("headers", {}), "X-Request-Id": rid}, **kwargs)
    assert response.status_code < 300, response.text
    return response, counts.statements[rid], counts.transactions[rid]


# (statements, transactions) at most, per call, the caller's look-up included; on SQLite and PostgreSQL alike.
BUDGETS = {
    "upload": (4, 1),  # the limits, outside any transaction; then the row and the limits again, in one
    "create": (12, 1),  # the limits, the credential and the upload's place (bare reads); then the credential again,
                        # the request and its items, the audit event (PostgreSQL: its chain lock), the upload's hold
    "status": (2, 0),  # bare reads, no transaction
    "download": (2, 0),
}


def test_each_call_of_a_pades_request_stays_within_its_statement_budget(
        api: httpx.Client, counted: PerCall, enrolled: Enrolled, tmp_path: Path) -> None:
    order = tmp_path / "order.pdf"
    write_payment_order_pdf(order)
    seen: dict[str, tuple[int, int]] = {}
    uploaded, *seen["upload"] = _call(api, counted, "PUT", "/v1/documents", content=order.read_bytes(),
                                      headers={"Content-Type": "application/pdf"})
    created, *seen["create"] = _call(api, counted, "POST", "/v1/requests", json={
        "credential_id": enrolled.rsa, "format": "pades",
        "documents": [{"document_id": uploaded.json()["document_id"], "title": "Ủy nhiệm chi UNC-9"}]})
    request_id_ = created.json()["request_id"]
    done = wait_done(api, request_id_)
    assert done["state"] == "signed", done
    _, *seen["status"] = _call(api, counted, "GET", f"/v1/requests/{request_id_}")
    download, *seen["download"] = _call(api, counted, "GET", done["documents"][0].removeprefix(str(api.base_url)))
    assert download.content.startswith(b"%PDF")
    over = {call: (found, BUDGETS[call]) for call, found in seen.items()
            if found[0] > BUDGETS[call][0] or found[1] > BUDGETS[call][1]}
    assert not over, f"(statements, transactions) found over budget: {over}"
