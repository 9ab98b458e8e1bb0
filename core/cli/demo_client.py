"""A small HTTP client for the Lethe API, as an internal platform would write one (used by `lethe demo`)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx


class ApiError(RuntimeError):
    """A problem+json answer, kept readable: `title: detail (status)`."""

    def __init__(self, response: httpx.Response) -> None:
        try:
            body = response.json()
            text = f"{body.get('title', 'error')}: {body.get('detail', '')}"
        except ValueError:
            text = response.text[:200]
        super().__init__(f"{response.request.method} {response.request.url.path} → {response.status_code} {text}")
        self.status_code = response.status_code


class LetheClient:
    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout, headers={"Authorization": f"Bearer {api_key}"}
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> Any:
        if method == "POST" and idempotent:
            # Every POST that creates something carries an idempotency key: a retry never files it twice.
            kwargs.setdefault("headers", {})["Idempotency-Key"] = str(uuid.uuid4())
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError(response)
        return response.json()

    def register_model(self, name: str, source_uri: str, description: str, tags: list[str]) -> dict[str, Any]:
        return self._call(
            "POST", "/v1/models",
            json={"name": name, "source_uri": source_uri, "description": description, "tags": tags},
        )

    def model(self, model_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/models/{model_id}")

    def submit_erasure(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/erasures", json=body)

    def erasure(self, request_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/erasures/{request_id}")

    def artifact_links(self, request_id: str) -> dict[str, Any]:
        """Fresh, expiring download links for a succeeded request's artifacts (an audited call)."""
        return self._call("POST", f"/v1/erasures/{request_id}/artifact-links", idempotent=False)

    def certificate(self, request_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/erasures/{request_id}/certificate")

    def public_key(self) -> dict[str, Any]:
        return self._call("GET", "/v1/certificates/public-key")

    def verify_audit(self) -> dict[str, Any]:
        return self._call("GET", "/v1/audit/verify")

    def download(self, url: str, dest: Path) -> Path:
        """Fetch an artifact link (absolute presigned URL or an API path) to `dest`."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._http.stream("GET", url) as response:
            if response.status_code >= 400:
                response.read()
                raise ApiError(response)
            with dest.open("wb") as fh:
                for chunk in response.iter_bytes():
                    fh.write(chunk)
        return dest


def wait_ready(base_url: str, timeout: float = 60.0) -> None:
    """Poll /readyz (no key needed) until the service answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=5.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the service did not become ready within {timeout:.0f} s")
        time.sleep(0.3)
