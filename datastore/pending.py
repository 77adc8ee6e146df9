"""``Pending``: a request already sent to a store, whose answer is read later.

A Redis put is written to the socket and its reply read only when the caller asks for it, so
the caller can do other work meanwhile (the model layer writes the metadata row while the KV
write is in flight). Stores that cannot pipeline hand out pendings that are already done.

A store that combines requests (the gateway) hands out pendings not yet sent: ``join`` lets
the metadata statements that must follow the write travel in the same request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Pending"]

T = TypeVar("T")
U = TypeVar("U")


class Pending(Generic[T]):
    """The answer to a sent request. ``result()`` waits for it the first time and then returns
    it, or raises the store's error, on every call; ``done()`` says whether it is in hand."""

    __slots__ = ("_done", "_error", "_origin", "_receive", "_value")

    def __init__(self, receive: Callable[[], T], *, origin: Pending[Any] | None = None) -> None:
        self._receive: Callable[[], T] | None = receive
        self._done = False
        self._error: BaseException | None = None
        self._origin = origin  # the pending this one transforms (``then``)

    @classmethod
    def run(cls, call: Callable[[], T]) -> Pending[T]:
        """A pending that is already done: ``call`` runs now, its value or error is kept."""
        pending = cls(call)
        pending._resolve()
        return pending

    def done(self) -> bool:
        """Whether the answer is in hand (``result()`` will not wait)."""
        return self._done

    def result(self) -> T:
        """The answer: waits for it if it has not come yet; raises the request's error."""
        if not self._done:
            self._resolve()
        if self._error is not None:
            raise self._error
        return self._value

    def then(self, transform: Callable[[T], U]) -> Pending[U]:
        """A pending whose answer is ``transform`` of this one's (done when this one is)."""
        if self._done:
            return Pending.run(lambda: transform(self.result()))
        return Pending(lambda: transform(self.result()), origin=self)

    def join(
        self, database: Any, statements: Sequence[Any], *, idempotent: bool = False
    ) -> Pending[Any] | None:
        """Arrange for ``statements`` to run on ``database`` in the same request as this write,
        after it and only if it succeeds, and return their pending results; ``None`` where
        that is not possible (the write was sent already, or the store cannot combine its
        requests with ``database``'s). ``result()`` of this pending sends the request.
        ``idempotent`` says the statements may run twice (as ``SQLDatabase.batch`` takes it),
        so a request whose answer was lost may be sent again."""
        if self._done or self._origin is None:
            return None
        return self._origin.join(database, statements, idempotent=idempotent)

    def _resolve(self) -> None:
        receive, self._receive = self._receive, None
        assert receive is not None
        try:
            self._value = receive()
        except BaseException as exc:  # kept for result(), which raises it
            self._error = exc
        finally:
            self._done = True

    def __repr__(self) -> str:
        state = "failed" if self._error is not None else "done" if self._done else "in flight"
        return f"<Pending {state}>"
