"""The job runtime: every background job of Lethe (erasures, model validations, and kinds to come) runs here.

- `states.py`   job states, kinds, lanes (broker queues) and the FROM → TO transition table;
- `models.py`   the `jobs` and `artifacts` tables;
- `repository.py` every query on them (leasing order, SKIP LOCKED);
- `lifecycle.py` create, lease (attempt = fencing token), heartbeat, complete, fail, cancel, release, reap;
- `retry.py`    the one backoff policy and which errors are transient;
- `keeper.py`   the lease keeper thread: heartbeats, cancellation, the wall-clock limit;
- `handlers.py` the registry of job kinds → handlers (domains register theirs);
- `runner.py`   lease the next job of a lane and run it through its handler;
- `services.py` background services (outbox relay, lease reaper, doorbells, ...) and the sweep that runs them;
- `journal.py`  where job events are audited (the audit chain, plugged in by core.audit.handlers);
- `metrics.py`  Prometheus metrics of attempts.

This package imports no domain: domains register handlers and services (`core.wiring` loads them).
"""
