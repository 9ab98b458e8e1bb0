"""Two writers append to the audit chain at once on SQLite (the embedded service: API requests and the
in-process worker share one database file): the second waits for the first's commit and links after it, instead
of reading the same last link and failing on a duplicate seq (a 500 on a GET that records a download link)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Row

from core.audit import repository
from core.audit import service as audit
from core.db import make_engine, unit_of_work
from core.migrate import upgrade


def test_a_writer_that_read_the_last_link_is_not_overtaken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    engine = make_engine(url)
    with unit_of_work(engine) as s:
        audit.append(s, action="test.first", subject="t:1", actor="test")

    other_done = threading.Event()
    errors: list[BaseException] = []

    def other_writer() -> None:
        try:
            with unit_of_work(engine) as s:
                audit.append(s, action="test.other", subject="t:2", actor="test")
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            other_done.set()

    read = repository.last_link
    started: list[threading.Thread] = []

    def last_link_then_race(session: Any) -> Row | None:  # type: ignore[type-arg]
        link = read(session)
        if not started:  # the first writer, between reading the last link and inserting: another one arrives
            started.append(threading.Thread(target=other_writer))
            started[0].start()
            other_done.wait(2.0)  # long enough for it to commit, unless it waits for our lock
        return link

    monkeypatch.setattr(repository, "last_link", last_link_then_race)
    with unit_of_work(engine) as s:
        appended = audit.append(s, action="test.mine", subject="t:3", actor="test")
    started[0].join(30)
    assert errors == [], errors
    assert appended.seq == 2, "the first writer to read the last link appends right after it"
    with unit_of_work(engine) as s:
        report = audit.verify(s, full=True, sign_head=False)
        actions = [e.action for e in repository.iter_chain(s)]
    assert report.ok, report
    assert actions == ["test.first", "test.mine", "test.other"]
