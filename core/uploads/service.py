"""Image uploads (evidence of a concept): PNG/JPEG/WebP only, fully decoded and size-checked with Pillow,
then stored through the object store with their sha256. Never commits."""

from __future__ import annotations

import hashlib
import io
import uuid
import warnings

from PIL import Image, UnidentifiedImageError
from sqlalchemy.orm import Session

from core.audit import service as audit
from core.config import Settings
from core.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed, found
from core.tenancy.schemas import Principal
from core.uploads import repository
from core.uploads.models import Upload

FORMATS = {"PNG": ("image/png", "png"), "JPEG": ("image/jpeg", "jpg"), "WEBP": ("image/webp", "webp")}
MIN_SIDE = 8


def inspect_image(data: bytes, max_pixels: int) -> tuple[str, str, int, int]:
    """(media type, extension, width, height) of a decodable PNG/JPEG/WebP within bounds; raises otherwise."""
    if not data:
        raise ValidationFailed("the uploaded file is empty", field="file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(FORMATS)) as probe:
                fmt = probe.format or ""
                width, height = probe.size
                if width * height > max_pixels:
                    raise ValidationFailed(
                        f"the image is {width}×{height}; at most {max_pixels} pixels are accepted", field="file"
                    )
                if min(width, height) < MIN_SIDE:
                    raise ValidationFailed(f"the image is {width}×{height}; each side needs >= {MIN_SIDE} px",
                                           field="file")
                probe.verify()  # structure and checksums (PNG CRCs)
            with Image.open(io.BytesIO(data), formats=list(FORMATS)) as img:
                img.load()  # a full decode: truncated or corrupt pixel data fails here
    except UnidentifiedImageError:
        raise UnsupportedMediaType("only PNG, JPEG and WebP images are accepted", field="file")
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ValidationFailed("the image is too large to decode safely", field="file")
    except ValidationFailed:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValidationFailed(f"the image could not be decoded: {exc}", field="file")
    if fmt not in FORMATS:
        raise UnsupportedMediaType("only PNG, JPEG and WebP images are accepted", field="file")
    media_type, ext = FORMATS[fmt]
    return media_type, ext, width, height


def create(
    session: Session, settings: Settings, principal: Principal, data: bytes, filename: str | None
) -> Upload:
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"the upload exceeds {settings.max_upload_bytes} bytes")
    media_type, ext, width, height = inspect_image(data, settings.max_image_pixels)
    digest = hashlib.sha256(data).hexdigest()
    upload_id = uuid.uuid4()
    key = f"tenants/{principal.tenant_id}/uploads/{upload_id}.{ext}"
    from core.storage import get_store

    stored = get_store(settings).put(key, data, content_type=media_type)
    if stored.sha256 != digest:
        raise ValidationFailed("the stored object does not match the upload (sha256); retry")
    upload = Upload(
        id=upload_id, tenant_id=principal.tenant_id, key=key, sha256=digest, size=len(data), media_type=media_type,
        width=width, height=height, filename=(filename or None) and filename[:255], created_by=principal.actor,
    )
    session.add(upload)
    session.flush()
    audit.append(session, action="upload.stored", subject=f"upload:{upload.id}", actor=principal.actor,
                 tenant_id=principal.tenant_id,
                 payload={"sha256": digest, "size": len(data), "media_type": media_type, "key": key})
    return upload


def get(session: Session, principal: Principal, upload_id: uuid.UUID) -> Upload:
    upload = found(repository.get(session, principal.tenant_id, upload_id), f"upload {upload_id}")
    return upload
