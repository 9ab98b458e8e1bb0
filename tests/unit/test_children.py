"""A test's long-lived children die with the test process, even when it is killed and runs no teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.children import SETPRIV, tied_to_test

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its (re-parented) reaper counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


@pytest.mark.skipif(SETPRIV is None, reason="util-linux setpriv is not installed")
def test_a_child_started_for_a_test_dies_when_the_test_process_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import subprocess, sys, time
        from tests.children import tied_to_test
        child = subprocess.Popen(tied_to_test(["sleep", "120"]), start_new_session=True)
        print(child.pid, flush=True)
        time.sleep(120)
    """)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert _alive(child)
        # setpriv asks for the signal, then becomes the command: until the child runs `sleep`, killing the
        # parent would test a child that has not asked yet.
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}/comm").read_text().strip() != "sleep" and time.monotonic() < deadline:
            time.sleep(0.01)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the child outlived the process that started it"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_the_command_itself_is_unchanged() -> None:
    assert tied_to_test(["redis-server", "--port", "1"])[-3:] == ["redis-server", "--port", "1"]
