"""Where webhooks may go: http(s) URLs whose host resolves only to public addresses (SSRF guard).

Checked when an endpoint is registered and again before every delivery (DNS can change in between).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from core.errors import ValidationFailed


class TargetRefused(ValidationFailed):
    kind = "webhook-target-refused"
    title = "Webhook target not allowed"


def _blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


def check_url(url: str, *, allow_private: bool, resolve: bool = True) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"webhook URL {url!r} is malformed: {exc}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"webhook URL {url!r} must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise TargetRefused("webhook URLs must not carry credentials; use the signing secret")
    if allow_private or not resolve:
        return url
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetRefused(f"webhook host {host!r} does not resolve: {exc.strerror}")
    except (UnicodeError, ValueError) as exc:
        raise TargetRefused(f"webhook host {host!r} is not a valid host name: {exc}")
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if _blocked(ip):
            raise TargetRefused(
                f"webhook host {host!r} resolves to {ip}, a private, loopback or reserved address; "
                "such targets are refused unless LETHE_WEBHOOK_ALLOW_PRIVATE is set"
            )
    return url
