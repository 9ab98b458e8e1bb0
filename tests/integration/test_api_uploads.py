"""POST /v1/uploads: PNG/JPEG/WebP only, decoded and size-checked, stored (file:// and S3) with sha256."""

from __future__ import annotations

import hashlib
import io
import uuid

from PIL import Image

from core.storage import get_store
from tests.api_support import ApiEnv, api, build_env, erasure_body  # noqa: F401

P = "https://lethe.dev/problems/"


def _image(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format=fmt)
    return buf.getvalue()


def test_upload_formats_and_use_in_request(api: ApiEnv) -> None:  # noqa: F811
    c, h = api.client, api.auth()
    ids = []
    for fmt, media in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")):
        data = _image(fmt)
        r = c.post("/v1/uploads", files={"file": (f"x.{fmt.lower()}", data, "application/octet-stream")}, headers=h)
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["sha256"] == hashlib.sha256(data).hexdigest() and out["size"] == len(data)
        assert out["media_type"] == media and (out["width"], out["height"]) == (64, 48)
        ids.append(out["id"])
        assert c.get(f"/v1/uploads/{out['id']}", headers=h).json()["sha256"] == out["sha256"]
    # stored through the object store, verified on read
    from core.db import unit_of_work
    from core.uploads.models import Upload

    with unit_of_work(api.engine) as s:
        row = s.get(Upload, uuid.UUID(ids[0]))
        assert row is not None
        assert hashlib.sha256(get_store(api.settings).get(row.key)).hexdigest() == row.sha256
    body = erasure_body(api.ready_model(), concepts=[{"target": "logo", "example_images": ids}])
    r = c.post("/v1/erasures", json=body, headers=h)
    assert r.status_code == 202 and r.json()["concepts"][0]["example_images"] == ids
    # another tenant cannot see or use them
    other = api.auth("globex")
    assert c.get(f"/v1/uploads/{ids[0]}", headers=other).status_code == 404
    body = erasure_body(api.ready_model("globex"), concepts=[{"target": "logo", "example_images": ids[:1]}])
    r = c.post("/v1/erasures", json=body, headers=other)
    assert r.status_code == 422 and ids[0] in r.json()["detail"]


def test_upload_rejections(api: ApiEnv) -> None:  # noqa: F811
    c, h = api.client, api.auth()
    gif = _image("GIF")
    png = _image("PNG")
    cases = [
        (gif, 415, "unsupported-media-type"),
        (b"%PDF-1.4 not an image", 415, "unsupported-media-type"),
        (png[: len(png) // 2], 422, "validation"),  # truncated
        (_image("PNG", (4, 4)), 422, "validation"),  # too small to be evidence
        (b"", 422, "validation"),
    ]
    for data, status, kind in cases:
        r = c.post("/v1/uploads", files={"file": ("f.png", data, "image/png")}, headers=h)
        assert r.status_code == status, (kind, r.text)
        assert r.json()["type"] == P + kind
    r = c.post("/v1/uploads", json={"file": "x"}, headers=h)
    assert r.status_code == 415
    r = c.post("/v1/uploads", headers=h, files={"other": ("f.png", png, "image/png")})
    assert r.status_code == 422


def test_upload_limits(pg_url: str) -> None:
    for env in build_env(pg_url, max_upload_bytes=4096, max_image_pixels=100 * 100):
        h = env.auth()
        big = _image("PNG", (90, 90)) + b"\0" * 5000
        r = env.client.post("/v1/uploads", files={"file": ("big.png", big, "image/png")}, headers=h)
        assert r.status_code == 413 and r.json()["type"] == P + "payload-too-large"
        r = env.client.post("/v1/uploads", files={"file": ("wide.png", _image("PNG", (200, 60)), "image/png")},
                            headers=h)
        assert r.status_code == 422 and "pixels" in r.json()["detail"]


def test_upload_to_s3_store(pg_url: str, s3_endpoint: str) -> None:
    bucket = f"lethe-{uuid.uuid4().hex[:8]}"
    for env in build_env(pg_url, store_url=f"s3://{bucket}/objects", s3_endpoint_url=s3_endpoint):
        store = get_store(env.settings)
        store.ensure_bucket()  # type: ignore[attr-defined]
        data = _image("JPEG")
        r = env.client.post("/v1/uploads", files={"file": ("a.jpg", data, "image/jpeg")}, headers=env.auth())
        assert r.status_code == 201, r.text
        keys = store.list("tenants/")
        assert len(keys) == 1 and store.get(keys[0]) == data
        assert env.client.get("/readyz").json()["checks"]["store"] == "ok"
