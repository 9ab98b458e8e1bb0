"""Command-line tools the dev extra installs (docker-compose, hadolint, openapi-python-client): found beside the
running interpreter first, so `.venv/bin/pytest` finds them without an activated environment, then on PATH."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def dev_tool(name: str) -> str:
    """The path of the dev extra's `name`; fails the test with how to install it when it is missing."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is missing (part of the dev extra): pip install -c constraints.txt -e '.[dev]'"
    return found
