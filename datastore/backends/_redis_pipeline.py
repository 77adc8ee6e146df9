"""A Redis script call sent now and its reply read later, on a connection held meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import NoScriptError

from ..errors import DatastoreError
from ..pending import Pending

__all__ = ["start_script"]


def start_script(
    pool: Any,
    script: Any,
    keys: list[str],
    args: list[Any],
    *,
    again: Callable[[], Any],
    translate: Callable[[redis.RedisError], DatastoreError],
) -> Pending[Any]:
    """``EVALSHA`` of ``script`` sent on a connection taken from ``pool``, which goes back
    once the reply is read.

    When the server does not have the script (it restarted, or its scripts were flushed),
    nothing ran and the call is made ``again`` the usual way, which loads it. A connection
    that fails before the reply is read is dropped and the call made ``again`` too: the
    client's own retries do the same with a failed connection.
    """
    try:
        connection = pool.get_connection()
    except (redis.ConnectionError, redis.TimeoutError):
        return Pending.run(again)
    try:
        connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except BaseException as exc:
        connection.disconnect()
        pool.release(connection)
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            return Pending.run(again)
        if isinstance(exc, redis.RedisError):
            raise translate(exc) from exc
        raise

    def receive() -> Any:
        try:
            return connection.read_response()
        except NoScriptError:
            pass
        except (redis.ConnectionError, redis.TimeoutError):
            connection.disconnect()
        except redis.RedisError as exc:
            raise translate(exc) from exc
        except BaseException:
            connection.disconnect()  # its reply may still arrive: never reuse it
            raise
        finally:
            pool.release(connection)
        return again()

    return Pending(receive)
