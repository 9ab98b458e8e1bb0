"""A body sent chunked (no Content-Length) that overruns the limit gets 413 problem+json, not 400."""

from __future__ import annotations

from collections.abc import Iterator

from tests.api_support import ApiEnv, api, erasure_body  # noqa: F401


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    yield b'{"model_id": "'
    sent = 0
    while sent < total:
        yield b"a" * size
        sent += size
    yield b'"}'


def test_chunked_json_body_over_limit_is_413(api: ApiEnv) -> None:  # noqa: F811
    limit = api.settings.max_body_bytes
    r = api.client.post(
        "/v1/erasures", content=_chunks(limit + 1), headers={**api.auth(), "Content-Type": "application/json"},
    )
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "https://lethe.dev/problems/payload-too-large" and body["limit"] == limit


def test_chunked_upload_over_limit_is_413(api: ApiEnv) -> None:  # noqa: F811
    limit = api.settings.max_upload_bytes
    boundary = "lethe-boundary"

    def multipart() -> Iterator[bytes]:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
               "Content-Type: image/png\r\n\r\n").encode()
        yield from (b"\0" * (1 << 20) for _ in range(limit // (1 << 20) + 1))
        yield f"\r\n--{boundary}--\r\n".encode()

    r = api.client.post("/v1/uploads", content=multipart(),
                        headers={**api.auth(), "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413, r.text
    assert r.json()["type"] == "https://lethe.dev/problems/payload-too-large"


def test_chunked_body_within_limit_still_works(api: ApiEnv) -> None:  # noqa: F811
    import json

    mid = api.ready_model()
    raw = json.dumps(erasure_body(mid)).encode()
    r = api.client.post("/v1/erasures", content=iter([raw[:10], raw[10:]]),
                        headers={**api.auth(), "Content-Type": "application/json"})
    assert r.status_code == 202, r.text
