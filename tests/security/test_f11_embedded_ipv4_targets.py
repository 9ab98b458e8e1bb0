"""IPv6 forms that wrap a private or loopback IPv4 address are refused as webhook targets.

6to4 (2002::/16), Teredo (2001::/32), IPv4-mapped (::ffff:0:0/96), IPv4-compatible (::/96) and NAT64
(64:ff9b::/96, 64:ff9b:1::/48) all carry an IPv4 address; the target check judges that address too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.webhooks.targets import TargetRefused, check_url
from tests.api_support import ApiEnv, build_env
from tests.integration.worker_support import use_database

P = "https://lethe.dev/problems/"

WRAPPED_PRIVATE = [
    "http://[2002:7f00:1::]/",                                  # 6to4 around 127.0.0.1
    "http://[2002:a00:1::]:8080/hook",                          # 6to4 around 10.0.0.1
    "http://[2002:a9fe:a9fe::]/latest/meta-data",               # 6to4 around 169.254.169.254
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",           # Teredo, client 127.0.0.1
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",           # Teredo, client 192.0.2.45 (documentation)
    "http://[::ffff:127.0.0.1]/",                               # IPv4-mapped
    "http://[::ffff:c0a8:101]/",                                # IPv4-mapped 192.168.1.1
    "http://[::7f00:1]/",                                       # IPv4-compatible 127.0.0.1
    "http://[::a00:1]/",                                        # IPv4-compatible 10.0.0.1
    "http://[64:ff9b::7f00:1]/",                                # NAT64 well-known prefix, 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/",                             # NAT64, 169.254.169.254
    "http://[64:ff9b:1::c0a8:1]/",                              # NAT64 local-use prefix, 192.168.0.1
]


@pytest.mark.parametrize("url", WRAPPED_PRIVATE)
def test_wrapped_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused, match="private, loopback or reserved"):
        check_url(url, allow_private=False)


def test_wrapped_public_addresses_stay_allowed() -> None:
    # 6to4 around a public address is an ordinary public target: the check unwraps, it does not ban 2002::/16.
    url = "http://[2002:808:808::]/"  # 8.8.8.8
    assert check_url(url, allow_private=False) == url


@pytest.fixture
def api(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    use_database(monkeypatch, pg_url)
    yield from build_env(pg_url)


def test_registration_refuses_6to4_loopback(api: ApiEnv) -> None:
    r = api.client.post("/v1/webhooks", json={"url": "http://[2002:7f00:1::]/"}, headers=api.auth())
    assert r.status_code == 422, r.text
    assert r.json()["type"] == P + "webhook-target-refused"
    assert api.client.get("/v1/webhooks", headers=api.auth()).json()["items"] == []
