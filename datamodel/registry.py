"""All declared models by name, and where their objects live."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .errors import DeclarationError

__all__ = ["Registry", "registry"]

# The registry sits below the model class (which registers itself here), so it cannot name
# ``DataModel`` without an import circle: a registered model is typed as any class.
DataModel = Any


class Registry:
    """Models by name, with checks that names, tables and KV classes do not collide."""

    def __init__(self) -> None:
        self._models: dict[str, type[DataModel]] = {}

    def register(self, model: type[DataModel]) -> None:
        meta = model._meta
        existing = self._models.get(meta.name)
        if existing is not None and existing.__qualname__ != model.__qualname__:
            raise DeclarationError(
                f"model name {meta.name!r} is used by both {existing.__module__}."
                f"{existing.__qualname__} and {model.__module__}.{model.__qualname__}"
            )
        for other in self._models.values():
            if other._meta.name == meta.name:
                continue
            if other._meta.table == meta.table:
                raise DeclarationError(
                    f"{meta.name} and {other._meta.name} both use table {meta.table!r}"
                )
            if other._meta.kv_class == meta.kv_class and other._meta.namespace != meta.namespace:
                raise DeclarationError(
                    f"{meta.name} and {other._meta.name} both use KV class {meta.kv_class!r} "
                    f"in different namespaces ({meta.namespace}, {other._meta.namespace})"
                )
        names = {listing.name for listing in meta.listings}
        for other in self._models.values():
            if other._meta.name != meta.name:
                taken = names & {listing.name for listing in other._meta.listings}
                if taken:
                    raise DeclarationError(
                        f"{meta.name} and {other._meta.name} both declare listing "
                        f"{sorted(taken)[0]!r}"
                    )
        self._models[meta.name] = model

    def unregister(self, name: str) -> None:
        self._models.pop(name, None)

    def get(self, name: str) -> type[DataModel]:
        try:
            return self._models[name]
        except KeyError:
            raise LookupError(f"no model named {name!r}") from None

    def __iter__(self) -> Iterator[type[DataModel]]:
        return iter(list(self._models.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def routes(self) -> dict[str, str]:
        """KV class -> namespace for every model, to extend a ``datastore.Routing``."""
        return {model._meta.kv_class: model._meta.namespace for model in self}

    def list_routes(self) -> dict[str, str]:
        """List name -> KV class for every model's listings, to extend a ``datastore.Routing``
        (a listing stored with its own model's class when it names none)."""
        return {
            listing.name: listing.stored_with or model._meta.kv_class
            for model in self
            for listing in model._meta.listings
        }


registry = Registry()
