"""One webhook POST: to the addresses that were checked, within one overall deadline.

- Pinned: the connection goes to an address `targets.resolve_target` resolved and allowed, never to a second
  lookup of the host name. The URL (hence the `Host` header, TLS SNI and certificate check) keeps the name.
- Deadline: every connect, TLS handshake, write and read gets at most the time left until the attempt's
  deadline, so a receiver that trickles a byte at a time cannot hold an attempt past it.
- No proxies from the environment (they would connect elsewhere) and no redirects; the response body is
  never read, only the status line and headers.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable
from typing import Any

import httpcore

from core.webhooks.targets import Target


class DeadlineExceeded(httpcore.TimeoutException):
    """The attempt's overall deadline passed."""


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _left(self, timeout: float | None) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the delivery's overall deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._left(timeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the checked addresses, whatever host name the URL carries."""

    def __init__(self, addresses: Iterable[str], deadline: float) -> None:
        self._addresses = tuple(addresses)
        self._deadline = deadline
        self._sync = httpcore.SyncBackend()
        self.connected_to: str | None = None

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in self._addresses:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded("the delivery's overall deadline passed")
            try:
                stream = self._sync.connect_tcp(address, port, min(timeout, left) if timeout else left,
                                                local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            self.connected_to = address
            return _DeadlineStream(stream, self._deadline)
        raise error or httpcore.ConnectError("no address to connect to")

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are delivered over TCP only")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def post(target: Target, body: bytes, headers: dict[str, str], *, deadline_seconds: float,
         ssl_context: ssl.SSLContext | None = None) -> int:
    """POST `body` to the target; returns the status code. Raises httpcore errors (DeadlineExceeded included)."""
    deadline = time.monotonic() + deadline_seconds
    backend = _PinnedBackend(target.addresses, deadline)
    timeouts = {"connect": deadline_seconds, "read": deadline_seconds, "write": deadline_seconds,
                "pool": deadline_seconds}
    pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=backend, max_connections=1, retries=0)
    with pool, pool.stream("POST", target.url, headers=list(headers.items()), content=body,
                           extensions={"timeout": timeouts}) as response:
        return response.status
