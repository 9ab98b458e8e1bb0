"""Long-lived child processes of a test (servers, Celery workers, a private redis-server) die with it.

A test stops its children in its teardown; a test process that is killed (a stopped run, a crashed xdist worker)
runs no teardown, and its children would go on serving and erasing, taking the cores from whatever runs next.
`tied_to_test` prefixes a command with util-linux's `setpriv --pdeathsig KILL`, so the kernel kills the child
when the process that started it exits (no `preexec_fn`: that runs Python between fork and exec, which is not
safe while the test process has threads). Where setpriv is missing the command runs as given.
"""

from __future__ import annotations

import shutil

SETPRIV = shutil.which("setpriv")


def tied_to_test(args: list[str]) -> list[str]:
    """`args`, run so that the child is killed when the starting process dies."""
    return [SETPRIV, "--pdeathsig", "KILL", "--", *args] if SETPRIV else list(args)
