"""This project's KV layer alone: the ``Datastore`` facade (objects with versions and owners,
compare-and-set), without models or metadata rows. What a user who needs no SQL queries
would use, and the like-for-like contender for redis-om, which writes no index either."""

from __future__ import annotations

from typing import Any

from datastore import Datastore

from . import NOW, USER_ID, page_values

# Its own project: it shares the stores with the model-layer subject.
PROJECT_ID = "proj_bench000002"


class DatastorePages:
    name = "datastore"

    def __init__(self, datastore: Datastore) -> None:
        self.datastore = datastore
        self.store = datastore.auth(USER_ID)

    @staticmethod
    def _id(number: int) -> str:
        return f"{PROJECT_ID}:page_{number:012d}"

    def create(self, number: int) -> None:
        data = {**page_values(number), "project_id": PROJECT_ID, "created_at": NOW}
        self.store.put("page", self._id(number), data, if_version=0)

    def _read(self, number: int) -> Any:
        return self.store.read("page", self._id(number))

    def get(self, number: int) -> None:
        self._read(number)

    def update(self, number: int) -> None:
        stored = self._read(number)
        data = stored.data
        data["priority"] = data["priority"] % 10 + 1
        self.store.put("page", self._id(number), data, if_version=stored.version)

    def soft_delete(self, number: int) -> None:
        stored = self._read(number)
        stored.data["deleted_at"] = NOW
        self.store.put("page", self._id(number), stored.data, if_version=stored.version)

    def page(self) -> None:
        raise NotImplementedError("the KV layer has no queries")

    page_with_data = values_page = aggregate_status = page

    def bulk_create(self, numbers: range) -> None:
        objects = {
            self._id(number): {**page_values(number), "project_id": PROJECT_ID, "created_at": NOW}
            for number in numbers
        }
        self.store.put_many("page", objects, create=True)

    def round_trips(self) -> tuple[int, int] | None:
        return self.datastore.round_trips.value, 0

    def close(self) -> None:
        pass
