"""The composition root of the job runtime: imports every domain's `handlers` module, which registers its job
kinds (`core.jobs.handlers.register`), background services (`core.jobs.services.register_service`) and outbox
topics (`core.outbox.relay.register_topic`).

Every process that runs jobs or background services calls `load()` at start: Celery workers (worker.app),
`lethe beat`, the embedded runner, benchmarks and the test suite. `core.jobs` itself imports no domain.
"""

from __future__ import annotations

import importlib

HANDLER_MODULES = (
    "core.erasure.handlers",
    "core.certificates.handlers",
    "core.versions.handlers",  # after certificates: auto_apply needs the issued certificate
    "core.registry.handlers",
    "core.webhooks.handlers",
    "core.schedules.handlers",
    "core.audit.handlers",
)


def load() -> None:
    import core.jobs.services  # noqa: F401  (the runtime's own services and the job doorbell topic)

    for name in HANDLER_MODULES:
        importlib.import_module(name)
