"""``Pending``: an answer read once, kept, and raised again if it was an error."""

from __future__ import annotations

import pytest

from datastore import Conflict, Pending


def test_the_answer_is_read_once_and_kept() -> None:
    calls: list[int] = []

    def receive() -> int:
        calls.append(1)
        return 7

    pending = Pending(receive)
    assert not pending.done() and calls == []
    assert pending.result() == 7 and pending.result() == 7
    assert pending.done() and calls == [1]


def test_an_error_is_raised_on_every_read() -> None:
    pending: Pending[int] = Pending.run(lambda: (_ for _ in ()).throw(Conflict("stale")))
    assert pending.done()
    for _ in range(2):
        with pytest.raises(Conflict, match="stale"):
            pending.result()


def test_then_transforms_and_waits_with_its_source() -> None:
    source = Pending(lambda: [3, 4])
    first = source.then(lambda versions: versions[0])
    assert not first.done() and not source.done()
    assert first.result() == 3 and source.done()
    done = Pending.run(lambda: [5]).then(lambda versions: versions[0])
    assert done.done() and done.result() == 5


def test_then_passes_errors_through() -> None:
    failed: Pending[list[int]] = Pending.run(lambda: (_ for _ in ()).throw(Conflict("x")))
    follow = failed.then(lambda versions: versions[0])
    assert follow.done()
    with pytest.raises(Conflict):
        follow.result()
