"""GET /v1/objects/{token}: signed, expiring links of the file:// store, sha256 checked while streaming."""

from __future__ import annotations

import time

import httpx

from core.storage import download_signing_key, get_store
from core.storage.signing import sign_download
from tests.api_support import ApiEnv, api  # noqa: F401

P = "https://lethe.dev/problems/"


def test_download_link_rules(api: ApiEnv) -> None:  # noqa: F811
    store = get_store(api.settings)
    data = b"weights" * 50_000
    store.put("tenants/t/requests/r/jobs/j/attempt-1/adapter.safetensors", data)
    url = store.presign_get("tenants/t/requests/r/jobs/j/attempt-1/adapter.safetensors", 60)
    r = api.client.get(url)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-disposition"] == 'attachment; filename="adapter.safetensors"'
    # expired and forged tokens
    expired = sign_download(download_signing_key(api.settings), "tenants/t/x", int(time.time()) - 1)
    r = api.client.get(f"/v1/objects/{expired}")
    assert r.status_code == 403 and r.json()["type"] == P + "invalid-download-token"
    assert api.client.get("/v1/objects/garbage").status_code == 403
    # a link to an object that is gone
    store.put("tenants/t/gone.bin", b"x")
    gone = store.presign_get("tenants/t/gone.bin", 60)
    store.delete("tenants/t/gone.bin")
    r = api.client.get(gone)
    assert r.status_code == 404 and r.json()["type"] == P + "object-not-found"


def test_corrupt_object_is_not_delivered(api: ApiEnv) -> None:  # noqa: F811
    store = get_store(api.settings)
    key = "tenants/t/requests/r/jobs/j/attempt-1/fused.safetensors"
    data = b"A" * 3_000_000
    store.put(key, data)
    path = api.settings.data_dir / "objects" / key
    assert path.exists()
    path.write_bytes(b"B" * len(data))  # bit rot / tampering after the sha256 was recorded
    url = store.presign_get(key, 60)
    try:
        r = api.client.get(url)
    except (httpx.HTTPError, RuntimeError):
        return  # the transfer was aborted: the client never gets a complete, wrong file
    assert len(r.content) < len(data), "a corrupt object was delivered in full"
