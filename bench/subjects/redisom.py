"""redis-om: a ``HashModel`` of the page on the same Redis. Listing, filtering and counting
need the RediSearch module, which a plain Redis does not have: those operations are n/a."""

from __future__ import annotations

import json
from typing import Any

from . import NOW, page_id, page_values


def page_model(url: str, prefix: str) -> Any:
    from redis_om import Field, HashModel, get_redis_connection

    connection = get_redis_connection(url=url)

    class RomPage(HashModel, index=True):  # type: ignore[call-arg]
        project_id: str
        source_path: str
        status: str
        priority: int
        uploaded: str
        extraction: str  # a hash holds flat strings: the JSON document, encoded
        created_at: str = NOW
        updated_at: str = NOW
        deleted_at: str = ""
        version: int = Field(default=1)

        class Meta:
            global_key_prefix = prefix.rstrip(":")
            model_key_prefix = "page"
            database = connection

    return RomPage


class RedisOmPages:
    name = "redis-om"

    def __init__(self, url: str, prefix: str) -> None:
        self.model = page_model(url, prefix)
        self.prefix = prefix

    def _new(self, number: int) -> Any:
        values = page_values(number)
        values["extraction"] = json.dumps(values["extraction"])
        return self.model(pk=values.pop("page_id"), **values)

    def create(self, number: int) -> None:
        self._new(number).save()

    def _get(self, number: int) -> Any:
        page = self.model.get(page_id(number))
        json.loads(page.extraction)
        return page

    def get(self, number: int) -> None:
        self._get(number)

    def update(self, number: int) -> None:
        page = self._get(number)
        page.priority = page.priority % 10 + 1
        page.version += 1
        page.save()

    def soft_delete(self, number: int) -> None:
        page = self._get(number)
        page.deleted_at = NOW
        page.version += 1
        page.save()

    def page(self) -> None:
        raise NotImplementedError("needs RediSearch")

    page_with_data = values_page = aggregate_status = page

    def bulk_create(self, numbers: range) -> None:
        self.model.add([self._new(number) for number in numbers])

    def round_trips(self) -> tuple[int, int] | None:
        return None

    def close(self) -> None:
        database = self.model.db()
        for key in database.scan_iter(match=self.prefix + "*", count=1000):
            database.delete(key)
