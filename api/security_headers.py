"""Browser-facing security headers on every response; a strict Content-Security-Policy on the approval page.

The page's one inline script and style are allowed by their SHA-256 (computed from the file at
start-up), nothing else runs, and no site may frame it (clickjacking an "approve" button). The app's
service worker and manifest come from the page's own origin ('self'), as its calls and images do.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.approval_page import PAGE

_NONE = "'none'"
_EVERYWHERE = {
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
    b"content-security-policy": b"frame-ancestors 'none'",
}


def _inline_hashes(html: str, tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)


def page_policy(page: Path) -> str:
    """The approval page's policy: its own inline script and style, calls to its own origin, nothing else."""
    html = page.read_text(encoding="utf-8")
    return ("default-src 'none'; "
            f"script-src {_inline_hashes(html, 'script') or _NONE}; "
            f"style-src {_inline_hashes(html, 'style') or _NONE}; "
            "connect-src 'self'; img-src 'self' data:; worker-src 'self'; manifest-src 'self'; "
            "base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


class SecurityHeadersMiddleware:
    """Adds the headers a response did not set itself; ``/approve`` gets the page's strict CSP."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.approval = {**_EVERYWHERE, b"content-security-policy": page_policy(PAGE).encode()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        wanted = self.approval if path == "/approve" or path.startswith("/approve/") else _EVERYWHERE

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in wanted.items() if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
