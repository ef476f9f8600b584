"""``kyso sign`` through the document pipeline: every format, and the level asked for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ca_adapters.emulator.server import EmulatorSet
from demo.documents import XML_CHIEF_ACCOUNTANT_PLACEMENT, XML_DATA_ID, payment_order_xml
from signer import validation
from tests.conftest import Enrolled

Kyso = Callable[..., tuple[int, str, str]]



def test_xml_signed_inside_itself_at_the_level_asked(kyso: Kyso,
                                                     enrolled: Enrolled, emulators: EmulatorSet, tmp_path: Path,
                                                     trust_roots: list) -> None:  # type: ignore[type-arg]
    order = tmp_path / "order.xml"
    order.write_bytes(payment_order_xml())
    signed = tmp_path / "order.signed.xml"
    code, out, err = kyso("sign", "--unconfirmed", str(order), "--out", str(signed),
                          "--credential", enrolled.rsa, "--xml", "--reference-id", XML_DATA_ID,
                          "--placement", XML_CHIEF_ACCOUNTANT_PLACEMENT, "--level", "B-LT")
    assert code == 0, err
    assert "B-LT" in out
    trust = validation.TrustStore(tuple(trust_roots), "test root")
    [verdict] = validation.validate_file(signed, validation.ValidationOptions(trust)).signatures
    assert (verdict.indication.value, verdict.level) == ("TOTAL_PASSED", "B-LT"), verdict
    code, out, _ = kyso("verify", str(signed), "--trust", str(tmp_path / "none.pem"))
    assert code == 2  # no such trust file: bad input, one line


@pytest.mark.parametrize(("args", "code"), [
    (["--xml", "--placement", XML_CHIEF_ACCOUNTANT_PLACEMENT], "invalid_input"),  # no --reference-id
    (["--format", "cades", "--level", "B-LTA"], "invalid_input"),
    (["--xml", "--reference-id", XML_DATA_ID, "--placement", "/Hoso/DLieu/SoCT"], "invalid_placement"),
])
def test_bad_cli_signing_input_is_one_line(kyso: Kyso, enrolled: Enrolled,
                                           tmp_path: Path, args: list[str], code: str) -> None:
    order = tmp_path / "order.xml"
    order.write_bytes(payment_order_xml())
    exit_code, _, err = kyso("sign", "--unconfirmed", str(order), "--out", str(tmp_path / "out"),
                             "--credential", enrolled.rsa, *args)
    assert exit_code == 2 and err.startswith(f"error [{code}]"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["order.xml"]  # nothing written
