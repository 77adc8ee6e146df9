"""Which KV namespace holds which object class and which list.

The defaults are the Nimbus namespaces (``NIMBUS_USERS``, ``NIMBUS_PAGES``, ...). Class names
are matched case-insensitively (``"PROJECT"``, ``"project"``); keys always use the lower case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import UnknownClass
from .keys import validate_class_name, validate_list_name, validate_namespace

__all__ = ["DEFAULT_CLASS_NAMESPACES", "DEFAULT_LIST_CLASSES", "Routing"]

DEFAULT_CLASS_NAMESPACES: Mapping[str, str] = {
    "USER": "NIMBUS_USERS",
    "EMAIL": "NIMBUS_EMAILS",
    "APIKEY": "NIMBUS_KEYS",
    "PROJECT": "NIMBUS_PROJECTS",
    "PAGE": "NIMBUS_PAGES",
    "BATCH": "NIMBUS_BATCHES",
    "QUEUE": "NIMBUS_QUEUE",
    "STATUS": "NIMBUS_STATUS",
    "LOGS": "NIMBUS_LOGS",
    "SESSION": "NIMBUS_SESSIONS",
    "CACHE": "NIMBUS_CACHE",
    "LIST": "NIMBUS_LISTS",
}

# Lists live in the LIST namespace unless routed to a class's namespace here.
DEFAULT_LIST_CLASSES: Mapping[str, str] = {}


@dataclass(frozen=True)
class Routing:
    """Class -> namespace and list -> namespace routing, validated at construction."""

    classes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CLASS_NAMESPACES))
    lists: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LIST_CLASSES))
    list_class: str = "LIST"

    def __post_init__(self) -> None:
        normalized = {}
        for class_name, namespace in self.classes.items():
            validate_class_name(class_name)
            normalized[class_name.upper()] = validate_namespace(namespace)
        object.__setattr__(self, "classes", normalized)
        lists = {}
        for list_name, class_name in self.lists.items():
            validate_list_name(list_name)
            if class_name.upper() not in normalized:
                raise UnknownClass(f"list {list_name!r} is routed to unknown class {class_name!r}")
            lists[list_name] = class_name.upper()
        object.__setattr__(self, "lists", lists)

    def namespace_for(self, class_name: str) -> str:
        """The namespace of ``class_name``; ``UnknownClass`` if none is configured."""
        validate_class_name(class_name)
        try:
            return self.classes[class_name.upper()]
        except KeyError:
            known = ", ".join(sorted(self.classes))
            raise UnknownClass(
                f"unknown class {class_name!r}: no namespace is configured for it "
                f"(known classes: {known})"
            ) from None

    def namespace_for_list(self, list_name: str) -> str:
        validate_list_name(list_name)
        return self.namespace_for(self.lists.get(list_name, self.list_class))
