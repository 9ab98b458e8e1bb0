"""Where the testbed lives: a locally built one under the data dir wins over the one shipped in the package."""

from __future__ import annotations

from pathlib import Path

SHIPPED = Path(__file__).resolve().parent / "assets" / "testbed"


def built_dir() -> Path:
    """Default output of `lethe testbed build`: {data_dir}/testbed."""
    from core.config import get_settings

    return get_settings().data_dir / "testbed"


def testbed_dir() -> Path:
    """$LETHE_DATA_DIR/testbed if it holds a manifest, else the testbed shipped with the package."""
    local = built_dir()
    if (local / "manifest.json").is_file():
        return local
    return SHIPPED
