"""Webhook targets: allowlist entries and URLs parsed strictly, matched by origin, and the address
a delivery connects to judged against the IANA special-purpose registries, then pinned.

A string prefix is no allowlist: ``https://dvc.example@1.2.3.4/`` starts with ``https://dvc.example``
and goes to 1.2.3.4. An entry is ``https://host[:port][/path]``; a URL matches when its scheme, host
and port equal the entry's and its path is the entry's path or below it (on a segment boundary).
Userinfo, backslashes, control characters, dot segments and hosts or ports that do not parse are
refused, since parsers disagree on them. The host is resolved once, every address is checked and
the delivery connects to a checked address: a second resolution could answer otherwise.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpcore
import httpx

from broker.errors import InvalidInput

MAX_URL_CHARS = 2048
MAX_ALLOWLIST_ENTRIES = 32
DEFAULT_PORTS = {"https": 443, "http": 80}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidWebhookUrl(InvalidInput):
    """Malformed, or a form that parsers read differently (userinfo, backslash, odd host or port)."""

    code = "invalid_webhook_url"


class WebhookNotAllowed(InvalidInput):
    code = "webhook_not_allowed"


class WebhookTargetRefused(InvalidInput):
    """The host does not resolve, or resolves to a private or special-purpose address."""

    code = "webhook_target_refused"


# RFC 3986 appendix B, with "//" required: scheme, authority, path, query, fragment.
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)(?:\?([^#]*))?(#.*)?", re.DOTALL)
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")  # controls, spaces, backslashes
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")  # "127.1", "0x7f.1": resolvers read them as IPv4


def _shown(text: str) -> str:
    return repr(text[:120] + ("..." if len(text) > 120 else ""))


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL or allowlist entry (for an entry, ``path`` is the prefix)."""

    scheme: str
    host: str
    """A lower-case ASCII name, or an IP address in its canonical form."""
    port: int
    path: str
    query: str | None = None

    @property
    def ip(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path}" + (f"?{self.query}" if self.query is not None else "")

    def under(self, entry: Target) -> bool:
        if (self.scheme, self.host, self.port) != (entry.scheme, entry.host, entry.port):
            return False
        prefix = entry.path if entry.path.endswith("/") else entry.path + "/"
        return self.path == entry.path or self.path.startswith(prefix)


def parse(text: object, *, entry: bool = False) -> Target:
    """Parse strictly; raise :class:`InvalidWebhookUrl` for anything ambiguous."""
    what = "webhook allowlist entry" if entry else "webhook URL"
    if not isinstance(text, str) or not text:
        raise InvalidWebhookUrl(f"a {what} is a non-empty string")
    if len(text) > MAX_URL_CHARS:
        raise InvalidWebhookUrl(f"a {what} has at most {MAX_URL_CHARS} characters")
    if _FORBIDDEN.search(text):
        raise InvalidWebhookUrl(f"a {what} may not contain spaces, control characters or backslashes: {_shown(text)}")
    match = _URL.fullmatch(text)
    if match is None:
        raise InvalidWebhookUrl(f"a {what} is https://host[:port]/path: {_shown(text)}")
    scheme, authority, path, query, fragment = match.groups()
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidWebhookUrl(f"a {what} is http(s)://host[:port]/path: {_shown(text)}")
    if fragment is not None or (entry and query is not None):
        raise InvalidWebhookUrl(f"a {what} has no {'fragment' if fragment is not None else 'query'}: {_shown(text)}")
    if "@" in authority:
        raise InvalidWebhookUrl(f"a {what} may not carry user information (user@host): {_shown(text)}")
    host_text, port_text = _split_authority(authority, what, text)
    port = DEFAULT_PORTS[scheme] if port_text is None else _port(port_text, what, text)
    return Target(scheme, _host(host_text, what, text), port, _path(path or "/", what, text), query)


def _split_authority(authority: str, what: str, text: str) -> tuple[str, str | None]:
    if authority.startswith("["):
        close = authority.find("]")
        rest = authority[close + 1:] if close > 0 else "?"
        if rest and not rest.startswith(":"):
            raise InvalidWebhookUrl(f"a {what} has a malformed host: {_shown(text)}")
        return authority[:close + 1], (rest[1:] if rest else None)
    host, sep, port = authority.partition(":")
    if ":" in port:
        raise InvalidWebhookUrl(f"a {what} has a malformed host (an IPv6 address goes in brackets): {_shown(text)}")
    return host, (port if sep else None)


def _port(text: str, what: str, url: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text) or not 0 < int(text) <= 65535:
        raise InvalidWebhookUrl(f"a {what} has a port from 1 to 65535: {_shown(url)}")
    return int(text)


def _host(text: str, what: str, url: str) -> str:
    bad = InvalidWebhookUrl(f"a {what} has a malformed host: {_shown(url)}")
    if text.startswith("["):
        inner = text[1:-1]
        if "%" in inner:  # a zone identifier names an interface of this machine
            raise bad
        try:
            return str(ipaddress.IPv6Address(inner))
        except ValueError as exc:
            raise bad from exc
    if not text:
        raise bad
    try:
        name = text.lower() if text.isascii() else text.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise bad from exc
    if _NUMERIC_LABEL.fullmatch(name.rsplit(".", 1)[-1]):
        try:
            return str(ipaddress.IPv4Address(name))  # dotted quad only, no leading zeros
        except ValueError as exc:
            raise bad from exc
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise bad
    return name


def _path(path: str, what: str, url: str) -> str:
    if _BAD_ESCAPE.search(path):
        raise InvalidWebhookUrl(f"a {what} has a malformed percent-escape: {_shown(url)}")
    for segment in path.split("/")[1:]:
        decoded = unquote(segment)
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded:
            raise InvalidWebhookUrl(f"a {what} has dot segments or encoded slashes in its path: {_shown(url)}")
    return path


# -- allowlists ------------------------------------------------------------------------------------


def validate_allowlist(entries: Sequence[str], *, allow_private: bool) -> list[str]:
    """Check the entries an administrator gives; return them in canonical form."""
    if len(entries) > MAX_ALLOWLIST_ENTRIES:
        raise InvalidWebhookUrl(f"a webhook allowlist has at most {MAX_ALLOWLIST_ENTRIES} entries")
    canonical = []
    for text in entries:
        target = parse(text, entry=True)
        if not allow_private:
            if target.scheme != "https":
                raise InvalidWebhookUrl(f"a webhook allowlist entry is https://...: {_shown(text)}")
            ip = target.ip
            if ip is not None and is_special(ip):
                raise WebhookTargetRefused(f"a webhook allowlist entry names a private or special-purpose "
                                           f"address: {_shown(text)}")
        canonical.append(target.url())
    return canonical


def _entries(allowlist: Iterable[str]) -> Iterable[Target]:
    for text in allowlist:
        try:
            yield parse(text, entry=True)
        except InvalidWebhookUrl:
            continue  # an entry stored before entries were checked: it matches nothing


# -- addresses -------------------------------------------------------------------------------------

# IANA IPv4 and IPv6 Special-Purpose Address Registries, whole blocks (a few globally reachable
# sub-blocks, such as anycast services in 192.0.0.0/24, are refused with them).
_SPECIAL_V4 = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24",
    "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32"))
_SPECIAL_V6 = tuple(ipaddress.IPv6Network(n) for n in (
    "::/128", "::1/128", "::/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
    "2002::/16", "2620:4f:8000::/48", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8"))
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")


def is_special(ip: IPAddress) -> bool:
    """True unless ``ip`` is an ordinary public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # judged by the IPv4 address it carries
            return is_special(ip.ipv4_mapped)
        # 6to4 (2002::/16) and Teredo (2001::/32) embed IPv4 addresses and are refused whole.
        return ip not in _GLOBAL_UNICAST_V6 or any(ip in net for net in _SPECIAL_V6)
    return any(ip in net for net in _SPECIAL_V4) or not ip.is_global


def resolve(target: Target, *, allow_private: bool) -> str:
    """The address to connect to: every address of the host must be public unless private ones are allowed."""
    if target.ip is not None:
        addresses = [target.host]
    else:
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise WebhookTargetRefused(f"the webhook host {_shown(target.host)} does not resolve") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise WebhookTargetRefused(f"the webhook host {_shown(target.host)} does not resolve")
    if not allow_private:
        for address in addresses:
            if is_special(ipaddress.ip_address(address.split("%")[0])):
                raise WebhookTargetRefused("webhooks to private, loopback or special-purpose addresses are refused")
    return addresses[0]


# -- the check and the pinned connection -----------------------------------------------------------


@dataclass(frozen=True)
class PinnedTarget:
    target: Target
    address: str

    @property
    def url(self) -> str:
        return self.target.url()

    def transport(self) -> httpx.BaseTransport:
        return PinnedTransport(self.address)


def check_url(url: object, allowlist: Sequence[str], *, allow_private: bool) -> PinnedTarget:
    """Refuse a URL that is malformed, outside the allowlist or (unless allowed) private; resolve it once."""
    target = parse(url)
    if target.scheme != "https" and not allow_private:
        raise InvalidWebhookUrl("a webhook URL is https://...")
    if not any(target.under(entry) for entry in _entries(allowlist)):
        raise WebhookNotAllowed(f"the webhook URL is not in this relying system's allowlist: {_shown(str(url))}")
    return PinnedTarget(target, resolve(target, allow_private=allow_private))


class _PinnedBackend(httpcore.SyncBackend):
    """Connects to the checked address whatever the host name resolves to by now."""

    def __init__(self, address: str) -> None:
        self.address = address

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return super().connect_tcp(self.address, port, timeout, local_address, socket_options)


class PinnedTransport(httpx.HTTPTransport):
    """httpx's transport (its error mapping included) over a pool that connects to one address;
    the Host header, TLS SNI and certificate checks still use the URL's host name. No proxies."""

    def __init__(self, address: str) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(),
                                             network_backend=_PinnedBackend(address))
