"""Where webhooks may go: http(s) URLs whose host resolves only to public addresses (SSRF guard).

Checked when an endpoint is registered and again before every delivery (DNS can change in between). A
delivery resolves the host once (`resolve_target`) and connects to exactly the addresses that were checked,
so an answer that changes between the check and the connection (DNS rebinding) is never used.

IPv6 forms that carry an IPv4 address (IPv4-mapped and -compatible, 6to4, Teredo, NAT64) are judged by the
IPv4 address inside them as well: `[2002:7f00:1::]` is 127.0.0.1 behind a 6to4 prefix.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from core.errors import ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# socket.getaddrinfo's shape: (host, port, family, type, proto, flags) -> [(family, type, proto, canon, sockaddr)]
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

# NAT64: the well-known prefix (RFC 6052) and the local-use prefix (RFC 8215); the IPv4 address is the last 32 bits.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class TargetRefused(ValidationFailed):
    kind = "webhook-target-refused"
    title = "Webhook target not allowed"


@dataclass(frozen=True)
class Target:
    """A checked webhook URL and the addresses a delivery may connect to (in resolver order)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, Teredo, NAT64)."""
    out: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        out.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        out.append(ip.sixtofour)
    if ip.teredo is not None:
        out.extend(ip.teredo)  # (server, client)
    if ip in _IPV4_COMPATIBLE or any(ip in net for net in _NAT64):
        out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return out


def blocked(ip: IPAddress) -> bool:
    """True for any address a webhook must not reach: not global, or wrapping one that is not."""
    if isinstance(ip, ipaddress.IPv6Address) and any(blocked(inner) for inner in embedded_ipv4(ip)):
        return True
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


def resolve_target(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> Target:
    """Check the URL and resolve its host once; every resolved address must be allowed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"webhook URL {url!r} is malformed: {exc}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"webhook URL {url!r} must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise TargetRefused("webhook URLs must not carry credentials; use the signing secret")
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    resolver = resolver or socket.getaddrinfo
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetRefused(f"webhook host {host!r} does not resolve: {exc.strerror}")
    except (UnicodeError, ValueError) as exc:
        raise TargetRefused(f"webhook host {host!r} is not a valid host name: {exc}")
    addresses: list[str] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]
        ip = ipaddress.ip_address(text)
        if not allow_private and blocked(ip):
            raise TargetRefused(
                f"webhook host {host!r} resolves to {ip}, a private, loopback or reserved address; "
                "such targets are refused unless LETHE_WEBHOOK_ALLOW_PRIVATE is set"
            )
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise TargetRefused(f"webhook host {host!r} does not resolve to any address")
    return Target(url=url, scheme=parts.scheme, host=host, port=port, addresses=tuple(addresses))


def check_url(url: str, *, allow_private: bool, resolve: bool = True) -> str:
    """Validate a webhook URL (and, unless private targets are allowed, where its host resolves)."""
    if allow_private or not resolve:
        _syntax_only(url)
        return url
    resolve_target(url, allow_private=False)
    return url


def _syntax_only(url: str) -> None:
    def offline(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 0, "", ("0.0.0.0", port))]

    resolve_target(url, allow_private=True, resolver=offline)
