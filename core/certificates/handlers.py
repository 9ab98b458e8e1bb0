"""What certificates add to erasures: a signed certificate issued in the success transaction of every erase
job (`core.erasure.handlers.SUCCEEDED`)."""

from __future__ import annotations

from core.certificates.service import issue
from core.erasure.handlers import SUCCEEDED

if issue not in SUCCEEDED:
    SUCCEEDED.append(issue)
