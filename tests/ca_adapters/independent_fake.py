"""An independent fake of each provider's remote-signing API, written from the sample bodies only.

It shares no code with kyso's emulators: it reads the documented bodies in ``samples/<provider>/``,
refuses a request that lacks a documented field (or carries it with another JSON type), answers
each call by copying the documented reply and putting its own values in, and signs the digest it
receives with an RSA-2048 key of its own (PKCS#1 v1.5), certified by a small CA chain it makes.

Calls no sample shows (VNPT's status request, Viettel's signHash reply, MISA's password login
request, Nacencomm's Getcert/ack replies and ``/ca.cer``) are answered the way the samples
around them suggest; :data:`UNDOCUMENTED` lists them.

The phone approves (or refuses, :attr:`IndependentFake.phone`) once the transaction has been
answered PENDING one time.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SAMPLES = Path(__file__).parent / "samples"
SHA256_OID = "2.16.840.1.101.3.4.2.1"
RSA_OID = "1.2.840.113549.1.1.1"

UNDOCUMENTED = {
    "vnpt": "the status request (POST {sign path}/{transaction_id}/status, no body): only '/status' is sampled",
    "viettel": "the signHash reply (modelled as the status reply: transactionId, status '0', signatures null); "
               "the status and certificates/info requests",
    "misa": "the login-api request body (userName, password) and headers (x-clientId, x-clientKey); "
            "the certificates/status request headers (taken from the sign request's)",
    "nacencomm": "Getcert (?idcts=, a quoted base64 DER), /ca.cer, the request code reply, the acknowledgement",
}


def sample(provider: str, name: str) -> Any:
    """The documented body of ``samples/<provider>/<name>.json`` (a fresh copy)."""
    return copy.deepcopy(json.loads((SAMPLES / provider / f"{name}.json").read_text())["body"])


def sample_headers(provider: str, name: str) -> list[str]:
    return list(json.loads((SAMPLES / provider / f"{name}.json").read_text()).get("headers", []))


def shape_errors(documented: Any, live: Any, where: str = "$") -> list[str]:
    """Each documented field missing from ``live`` or of another JSON type (null documented: any)."""
    if documented is None:
        return []
    if isinstance(documented, dict):
        if not isinstance(live, dict):
            return [f"{where}: an object is documented"]
        errors = []
        for key, value in documented.items():
            if key not in live:
                errors.append(f"{where}.{key} missing")
            else:
                errors += shape_errors(value, live[key], f"{where}.{key}")
        return errors
    if isinstance(documented, list):
        if not isinstance(live, list):
            return [f"{where}: a list is documented"]
        return [e for item in live for e in shape_errors(documented[0], item, f"{where}[]")] if documented else []
    if type(documented) is not type(live):
        return [f"{where}: {type(documented).__name__} documented, {type(live).__name__} sent"]
    return []


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64_digest(value: Any) -> bytes | None:
    try:
        raw = base64.b64decode(str(value), validate=True)
    except (ValueError, binascii.Error):
        return None
    return raw if len(raw) == 32 else None


def _hex_digest(value: Any) -> bytes | None:
    try:
        raw = bytes.fromhex(str(value))
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


# -- the fake's own PKI -------------------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Independent Fake (TEST)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: str, key: rsa.RSAPrivateKey, issuer: x509.Certificate | None, issuer_key: rsa.RSAPrivateKey,
           *, ca: bool) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject))
               .issuer_name(issuer.subject if issuer else _name(subject)).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=730 if ca else 365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Pki:
    """A root, an issuing CA under it, and the signer's key and certificate (plus an organisation seal)."""

    root_key: rsa.RSAPrivateKey
    root: x509.Certificate
    ca_key: rsa.RSAPrivateKey
    ca: x509.Certificate
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    seal_key: rsa.RSAPrivateKey
    seal: x509.Certificate

    @classmethod
    def make(cls, signer: str) -> Pki:
        keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(4)]
        root = _issue("Fake Root CA", keys[0], None, keys[0], ca=True)
        ca = _issue("Fake Issuing CA", keys[1], root, keys[0], ca=True)
        return cls(keys[0], root, keys[1], ca, keys[2], _issue(signer, keys[2], ca, keys[1], ca=False),
                   keys[3], _issue(f"{signer} (seal)", keys[3], ca, keys[1], ca=False))

    @staticmethod
    def der(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.DER)

    def sign(self, digest: bytes) -> bytes:
        """PKCS#1 v1.5 over a SHA-256 digest it was given (not over the digest's own hash)."""
        return self.key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))


# -- transactions -------------------------------------------------------------------------------------------------


@dataclass
class Transaction:
    id: str
    owner: str
    digests: list[tuple[str, bytes]]
    polls: int = 0
    acknowledged: bool = False

    def signatures(self, pki: Pki) -> list[tuple[str, str]]:
        return [(doc_id, _b64(pki.sign(digest))) for doc_id, digest in self.digests]


@dataclass
class IndependentFake:
    """One provider's API: a user, the system's credentials, its transactions, a log of refusals."""

    provider: str
    user_id: str = "079088001234"
    client_id: str = "fake-client"
    client_secret: str = field(default_factory=lambda: secrets.token_hex(8))
    password: str = "fake-password"
    otp: str = field(default_factory=lambda: f"{secrets.randbelow(10**6):06d}")
    phone: str = "approve"
    """``approve`` or ``reject``: what the signer does once the transaction has been answered PENDING once."""

    def __post_init__(self) -> None:
        self.pki = Pki.make(f"Signer {self.user_id}")
        self.transactions: dict[str, Transaction] = {}
        self.refusals: list[str] = []
        self.tokens: dict[str, str] = {}  # bearer token -> user id
        self.misa_account_id = str(uuid.uuid4())  # MISA's user.id: not the userName one logs in with
        self.misa_alias = str(uuid.uuid4())
        self.viettel_credential = f"{self.user_id}_{self.pki.cert.serial_number % 10_000_000}_20250101000000"
        self.idcts = 4711
        self.server: uvicorn.Server | None = None
        self.base_url = ""

    # the phone: one PENDING answer first, then the signer's decision
    def outcome(self, tx: Transaction) -> str:
        tx.polls += 1
        return "pending" if tx.polls == 1 else self.phone

    def refuse(self, why: str) -> str:
        self.refusals.append(why)
        return why

    def new_transaction(self, owner: str, digests: list[tuple[str, bytes]]) -> Transaction:
        tx = Transaction(uuid.uuid4().hex, owner, digests)
        self.transactions[tx.id] = tx
        return tx

    # -- serving --------------------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        routes = {"vnpt": self._vnpt_routes, "viettel": self._viettel_routes, "misa": self._misa_routes,
                  "nacencomm": self._nacencomm_routes}[self.provider]()
        return Starlette(routes=routes)

    def start(self) -> IndependentFake:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(self.app(), host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=self.server.run, daemon=True).start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.provider} fake did not start")
            time.sleep(0.02)
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True

    # -- VNPT SmartCA ---------------------------------------------------------------------------------------------

    def _vnpt_routes(self) -> list[Route]:
        def error(code: int, message: str) -> JSONResponse:  # HTTP 200 either way, as the bad-credentials sample
            body = sample("vnpt", "status.bad_credentials.reply")
            body.update(status_code=code, message=self.refuse(message), data=None)
            return JSONResponse(body)

        async def body_of(request: Request) -> dict[str, Any] | None:
            try:
                body = await request.json()
            except ValueError:
                return None
            return body if isinstance(body, dict) else None

        def authenticated(body: dict[str, Any]) -> bool:
            return body.get("sp_id") == self.client_id and body.get("sp_password") == self.client_secret

        async def get_certificate(request: Request) -> Response:
            body = await body_of(request)
            if body is None or not authenticated(body):
                return error(401, "SP_CREDENTIAL_INVALID")
            if body.get("user_id") != self.user_id or not isinstance(body.get("transaction_id"), str):
                return error(400, "user_id unknown or transaction_id missing")
            reply = sample("vnpt", "get_certificate.reply")
            seal, personal = reply["data"]["user_certificates"]
            chain = {"ca_cert": _b64(self.pki.der(self.pki.ca)), "root_cert": _b64(self.pki.der(self.pki.root))}
            for entry, cert in ((seal, self.pki.seal), (personal, self.pki.cert)):
                entry.update(serial_number=f"{cert.serial_number:x}", cert_data=_b64(self.pki.der(cert)),
                             chain_data=dict(chain), cert_subject=cert.subject.rfc4514_string(),
                             cert_valid_from=cert.not_valid_before_utc.isoformat(),
                             cert_valid_to=cert.not_valid_after_utc.isoformat(),
                             transaction_id=str(body["transaction_id"]))
            return JSONResponse(reply)

        async def sign(request: Request) -> Response:
            body = await body_of(request)
            if body is None or not authenticated(body):
                return error(401, "SP_CREDENTIAL_INVALID")
            if errors := shape_errors(sample("vnpt", "sign.request"), body):
                return error(400, "; ".join(errors))
            if body["user_id"] != self.user_id:
                return error(400, "user_id unknown")
            if str(body["serial_number"]).lower() != f"{self.pki.cert.serial_number:x}":
                return error(400, "serial_number is not the signer's personal certificate")
            digests = []
            for item in body["sign_files"]:
                digest = _hex_digest(item["data_to_be_signed"])
                if digest is None or item["sign_type"] != "hash":
                    return error(400, "data_to_be_signed must be a hex SHA-256 digest with sign_type hash")
                digests.append((item["doc_id"], digest))
            if not digests:
                return error(400, "no sign_files")
            tx = self.new_transaction(self.user_id, digests)
            reply = sample("vnpt", "sign.reply")
            reply["data"].update(transaction_id=tx.id, tran_code=secrets.token_hex(3))
            return JSONResponse(reply)

        async def status(request: Request) -> Response:
            tx = self.transactions.get(request.path_params["tid"])
            if tx is None:
                return error(404, "transaction not found")
            outcome = self.outcome(tx)
            if outcome == "approve":
                reply = sample("vnpt", "status.signed.reply")
                template = reply["data"]["signatures"][0]
                reply["data"]["signatures"] = [{**template, "doc_id": d, "signature_value": s}
                                               for d, s in tx.signatures(self.pki)]
            else:
                reply = sample("vnpt", "status.pending.reply" if outcome == "pending" else "status.rejected.reply")
            reply["data"]["transaction_id"] = tx.id
            return JSONResponse(reply)

        return [Route("/v1/credentials/get_certificate", get_certificate, methods=["POST"]),
                Route("/v1/signatures/sign", sign, methods=["POST"]),
                Route("/v1/signatures/sign/{tid}/status", status, methods=["POST"])]

    # -- Viettel MySign -------------------------------------------------------------------------------------------

    def _viettel_routes(self) -> list[Route]:
        def error(http: int, code: str, message: str) -> JSONResponse:
            return JSONResponse({"code": code, "message": self.refuse(message)}, status_code=http)

        def bearer(request: Request) -> str | None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            return self.tokens.get(token) if scheme == "Bearer" else None

        async def login(request: Request) -> Response:
            body = await request.json()
            if errors := shape_errors(sample("viettel", "login.request"), body):
                return error(400, "400", "; ".join(errors))
            if (body["client_id"], body["client_secret"]) != (self.client_id, self.client_secret) \
                    or body["profile_id"] != "adss:ras:profile:001" or body["user_id"] != self.user_id:
                return error(401, "401", "client or user unknown")
            reply = sample("viettel", "login.reply")
            token = secrets.token_urlsafe(16)
            self.tokens[token] = body["user_id"]  # a token per user
            reply.update(access_token=token)
            return JSONResponse(reply)

        async def certificates(request: Request) -> Response:
            body = await request.json()
            user = bearer(request)
            if user is None:
                return error(401, "59033", "token rejected")
            if body.get("user_id") != user:
                return error(403, "403", "the token is another user's")
            reply = sample("viettel", "certificates_info.reply")
            cert = self.pki.cert
            reply[0]["credential_id"] = self.viettel_credential
            reply[0]["cert"].update(certificates=[_b64(self.pki.der(c)) for c in (cert, self.pki.ca, self.pki.root)],
                                    serialNumber=f"{cert.serial_number:x}", subjectDN=cert.subject.rfc4514_string(),
                                    issuerDN=cert.issuer.rfc4514_string(),
                                    validFrom=f"{cert.not_valid_before_utc:%Y%m%d%H%M%S}+0000",
                                    validTo=f"{cert.not_valid_after_utc:%Y%m%d%H%M%S}+0000")
            return JSONResponse(reply)

        async def sign_hash(request: Request) -> Response:
            body = await request.json()
            user = bearer(request)
            if user is None:
                return error(401, "59033", "token rejected")
            if errors := shape_errors(sample("viettel", "signHash.request"), body):
                return error(400, "400", "; ".join(errors))
            if (body["client_id"], body["client_secret"]) != (self.client_id, self.client_secret):
                return error(401, "401", "client unknown")
            if body["credentialID"] != self.viettel_credential or user != self.user_id:
                return error(403, "403", "credentialID is not the token's user's")
            if body["hashAlgo"] != SHA256_OID or body["signAlgo"] != RSA_OID or body["async"] not in (0, 1, 3):
                return error(400, "400", "hashAlgo, signAlgo or async not as documented")
            digests = [_b64_digest(h) for h in body["hash"]]
            documents = body["documents"]
            if not digests or None in digests or not body["numSignatures"] == len(digests) == len(documents):
                return error(400, "400", "hash must hold numSignatures base64 SHA-256 digests, one per document")
            try:
                base64.b64decode(body["description"], validate=True)
                for d in documents:
                    base64.b64decode(d["document_name"], validate=True)
            except (ValueError, binascii.Error):
                return error(400, "400", "description and document_name are base64")
            tx = self.new_transaction(user, [(d["document_id"], h) for d, h in zip(documents, digests, strict=False)])
            reply = sample("viettel", "status.pending.reply")  # modelled: no signHash reply is sampled
            reply["transactionId"] = tx.id
            return JSONResponse(reply)

        async def status(request: Request) -> Response:
            body = await request.json()
            user = bearer(request)
            if user is None:
                return error(401, "59033", "token rejected")
            tx = self.transactions.get(str(body.get("transactionId")))
            if tx is None or tx.owner != user:
                return error(404, "404", "transaction unknown for this user")
            outcome = self.outcome(tx)
            if outcome == "approve":
                reply = sample("viettel", "status.signed.reply")
                reply["signatures"] = [s for _, s in tx.signatures(self.pki)]
            else:
                reply = sample("viettel", "status.pending.reply" if outcome == "pending"
                               else "status.rejected_numeric.reply")
            reply["transactionId"] = tx.id
            return JSONResponse(reply)

        return [Route("/vtss/service/ras/v1/login", login, methods=["POST"]),
                Route("/vtss/service/certificates/info", certificates, methods=["POST"]),
                Route("/vtss/service/signHash", sign_hash, methods=["POST"]),
                Route("/vtss/service/requests/status", status, methods=["POST"])]

    # -- MISA eSign -----------------------------------------------------------------------------------------------

    def _misa_routes(self) -> list[Route]:
        ok_status = sample("misa", "sign.reply")["status"]

        def error(http: int, code: int, message: str) -> JSONResponse:
            status = dict(ok_status, type=1, code=code, errorCode=code, error=message,
                          devMsg=self.refuse(message), userMsg=message)
            return JSONResponse({"status": status, "data": None}, status_code=http)

        def client_headers(request: Request, names: list[str]) -> bool:
            id_name, key_name = names[0], names[1]
            return (request.headers.get(id_name), request.headers.get(key_name)) == (self.client_id, self.client_secret)

        def signing_user(request: Request) -> str | None:
            if not client_headers(request, ["x-clientId", "x-clientKey"]):
                return None
            scheme, _, token = request.headers.get("AuthorizationRM", "").partition(" ")
            return self.tokens.get(token) if scheme == "Bearer" else None

        async def login(request: Request) -> Response:
            body = await request.json()
            if not client_headers(request, ["x-clientId", "x-clientKey"]):
                return error(401, 401, "client headers")
            if (body.get("userName"), body.get("password")) != (self.user_id, self.password):
                return error(200, 401, "user name or password")
            return JSONResponse(sample("misa", "login.second_factor.reply"))

        async def two_factor(request: Request) -> Response:
            body = await request.json()
            if not client_headers(request, sample_headers("misa", "two_factor.request")):
                return error(401, 401, "two-factor headers are clientId/clientKey")
            if errors := shape_errors(sample("misa", "two_factor.request"), body):
                return error(400, 400, "; ".join(errors))
            if body["userName"] != self.user_id or body["code"] != self.otp:
                return error(200, 123, "wrong code")
            reply = sample("misa", "tokens.reply")
            token = secrets.token_urlsafe(16)
            self.tokens[token] = self.misa_account_id
            reply["data"].update(accessToken=secrets.token_urlsafe(16), remoteSigningAccessToken=token,
                                 refreshToken=secrets.token_urlsafe(16), user={"id": self.misa_account_id})
            return JSONResponse(reply)

        async def certificates(request: Request) -> Response:
            if signing_user(request) is None:
                return error(401, 401, "AuthorizationRM")
            reply = sample("misa", "certificates.reply")
            item = reply["data"][0]
            cert = self.pki.cert
            item.update(userId=self.misa_account_id, keyAlias=self.misa_alias, certificate=_b64(self.pki.der(cert)),
                        certiticateChain=[_b64(self.pki.der(c)) for c in (cert, self.pki.ca, self.pki.root)],
                        effectiveDate=cert.not_valid_before_utc.isoformat(),
                        expirationDate=cert.not_valid_after_utc.isoformat())
            return JSONResponse(reply)

        async def sign(request: Request) -> Response:
            user = signing_user(request)
            if user is None:
                return error(401, 401, "x-clientId, x-clientKey and AuthorizationRM")
            body = await request.json()
            if errors := shape_errors(sample("misa", "sign.request"), body):
                return error(400, 400, "; ".join(errors))
            if body["UserId"] != user:
                return error(200, 403, "UserId is not the signing token's user.id")
            if body["CertAlias"] != self.misa_alias:
                return error(200, 404, "CertAlias unknown")
            digests = [(d["DocumentId"], _b64_digest(d["FileToSign"])) for d in body["Documents"]]
            if not digests or any(d is None for _, d in digests):
                return error(400, 400, "FileToSign must be a base64 SHA-256 digest")
            tx = self.new_transaction(user, digests)  # type: ignore[arg-type]
            reply = sample("misa", "sign.reply")
            reply["data"]["transactionId"] = tx.id
            return JSONResponse(reply)

        async def status(request: Request) -> Response:
            user = signing_user(request)
            if user is None:
                return error(401, 401, "AuthorizationRM")
            tx = self.transactions.get(request.path_params["tid"])
            if tx is None or tx.owner != user:
                return error(404, 404, "transaction unknown")
            outcome = self.outcome(tx)
            name = {"approve": "status.success.reply", "pending": "status.pending.reply"}.get(outcome,
                                                                                               "status.cancelled.reply")
            reply = sample("misa", name)
            reply["data"]["transactionId"] = tx.id
            if outcome == "approve":
                reply["data"]["signatures"] = [{"documentId": d, "signature": s} for d, s in tx.signatures(self.pki)]
            return JSONResponse(reply)

        return [Route("/api/auth/api/v1/auth/login-api", login, methods=["POST"]),
                Route("/api/auth/api/v1/auth/two-factor-auth", two_factor, methods=["POST"]),
                Route("/external/esrm/service/general/api/v1/Certificates/by-userId", certificates, methods=["GET"]),
                Route("/external/esrm/service/signing/api/v1/Signing/hash", sign, methods=["POST"]),
                Route("/external/esrm/service/signing/api/v1/Signing/status/{tid}", status, methods=["GET"])]

    # -- Nacencomm CA2 --------------------------------------------------------------------------------------------

    def _nacencomm_routes(self) -> list[Route]:
        def quoted(text: str) -> Response:  # every reply a JSON-quoted string
            return Response(json.dumps(text), media_type="application/json")

        def error(message: str) -> Response:
            return quoted(f"ERR: {self.refuse(message)}")

        async def get_cert(request: Request) -> Response:
            if request.query_params.get("idcts") != str(self.idcts):
                return error("idcts unknown")
            return quoted(_b64(self.pki.der(self.pki.cert)))

        async def ca_cert(request: Request) -> Response:
            return Response(self.pki.der(self.pki.ca), media_type="application/pkix-cert")

        async def send(request: Request) -> Response:
            body = await request.json()
            if errors := shape_errors(sample("nacencomm", "send.request"), body):
                return error("; ".join(errors))
            if body["Mahethong"] != self.client_id or body["Masothue"] != self.user_id:
                return error("Mahethong or Masothue unknown")
            if str(body["Serial"]).lower() != f"{self.pki.cert.serial_number:x}":
                return error("Serial is not the signer's certificate")
            digest = _b64_digest(body["Cleartext"])
            if body["Type"] != "HASH" or digest is None:
                return error("Type HASH carries a base64 SHA-256 digest in Cleartext")
            if len(str(body["Keyhethong"]).split("|")) != 4:
                return error("Keyhethong is id|ref|email|title")
            tx = self.new_transaction(self.user_id, [(str(body["Keyhethong"]).split("|")[0], digest)])
            return quoted(tx.id)

        async def result(request: Request) -> Response:
            tx = self.transactions.get(request.query_params.get("Code", ""))
            if tx is None:
                return error("Code unknown")
            outcome = self.outcome(tx)
            if outcome == "pending":
                return Response(sample("nacencomm", "result.pending.reply"), media_type="application/json")
            name = "result.signed.reply" if outcome == "approve" else "result.refused.reply"
            documented = json.loads(json.loads(sample("nacencomm", name).replace("$SIG", "")))
            documented["Code"] = tx.id
            if outcome == "approve":
                documented["Chuky"] = tx.signatures(self.pki)[0][1]
            return quoted(json.dumps(documented, ensure_ascii=False))

        async def acknowledge(request: Request) -> Response:
            tx = self.transactions.get(request.query_params.get("Code", ""))
            if tx is None:
                return error("Code unknown")
            tx.acknowledged = True
            return quoted("OK")

        return [Route("/api/APISigncore/Getcert", get_cert, methods=["POST", "GET"]),
                Route("/ca.cer", ca_cert, methods=["GET"]),
                Route("/api/APISigncore/Guiyeucauky_Mobilesign", send, methods=["POST"]),
                Route("/api/APISigncore/Layketquaky", result, methods=["POST"]),
                Route("/api/APISigncore/Capnhattrangthaihoantat_Code", acknowledge, methods=["POST"])]
