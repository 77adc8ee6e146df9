"""factory-boy factories for the Nimbus domain; ``create`` saves through the model layer."""

from __future__ import annotations

from typing import Any

import factory

from datamodel import DataModel, ids
from datamodel.clock import now_iso
from nimbus.models import (
    ApiKey,
    Batch,
    EmailLookup,
    Page,
    PageLog,
    PageStatus,
    Project,
    Queue,
    User,
    key_hash,
)


class ModelFactory(factory.Factory):
    """Builds DataModel instances; ``create()`` saves them as ``owner`` (or as the system)."""

    class Meta:
        abstract = True

    @classmethod
    def _build(cls, model_class: type[DataModel], *args: Any, **kwargs: Any) -> DataModel:
        kwargs.pop("owner", None)
        return model_class(**kwargs)

    @classmethod
    def _create(cls, model_class: type[DataModel], *args: Any, **kwargs: Any) -> DataModel:
        owner = kwargs.pop("owner", None)
        manager = model_class.objects.auth(owner) if owner else model_class.objects.system()
        return manager.create(**kwargs)


class UserFactory(ModelFactory):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    profile = factory.LazyAttribute(lambda user: {"name": user.email.split("@")[0]})


class EmailLookupFactory(ModelFactory):
    """``EmailLookupFactory.create(user_id=...)``: the lookup names that user (a user's own
    save path writes theirs; this is for lookups made by hand)."""

    class Meta:
        model = EmailLookup

    email = factory.Sequence(lambda n: f"lookup{n}@example.com")
    user_id = factory.Sequence(lambda n: f"user_lookup{n}")


class ApiKeyFactory(ModelFactory):
    """``ApiKeyFactory.create(owner=..., secret=...)``; the secret is ``ids.api_key()``."""

    class Meta:
        model = ApiKey

    class Params:
        secret = factory.LazyFunction(ids.api_key)

    key_hash = factory.LazyAttribute(lambda key: key_hash(key.secret))
    prefix = factory.LazyAttribute(lambda key: key.secret[:12])
    name = factory.Sequence(lambda n: f"Key {n}")
    permissions = factory.LazyFunction(lambda: ["read", "write"])
    user_email = factory.Sequence(lambda n: f"owner{n}@example.com")


class ProjectFactory(ModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"site{n}.example.com")


class ProjectChildFactory(ModelFactory):
    """A model whose ``project_id`` references a project: ``create()`` also creates that
    project (same owner) unless it exists, as a save checks that the project is there."""

    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class: type[DataModel], *args: Any, **kwargs: Any) -> DataModel:
        owner = kwargs.get("owner")
        projects = Project.objects.auth(owner) if owner else Project.objects.system()
        if projects.get_or_none(kwargs["project_id"]) is None:
            values = {"project_id": kwargs["project_id"], "name": "a parent project"}
            if not owner:
                values["user_id"] = "system"
            projects.create(**values)
        return super()._create(model_class, *args, **kwargs)


class PageFactory(ProjectChildFactory):
    class Meta:
        model = Page

    project_id = factory.LazyFunction(ids.project_id)
    source_path = factory.Sequence(lambda n: f"dist/local/page-{n}.html")
    uploaded = factory.LazyFunction(now_iso)
    extraction = factory.LazyFunction(
        lambda: {
            "engine": "html",
            "head": {"title": "A page"},
            "above_fold_blocks": [{"id": "block-0", "type": "h1", "content": "Hello"}],
        }
    )


class BatchFactory(ProjectChildFactory):
    class Meta:
        model = Batch

    project_id = factory.LazyFunction(ids.project_id)
    batch_id = factory.Sequence(lambda n: f"batch_20240902_{n:06d}")


class QueueFactory(ModelFactory):
    class Meta:
        model = Queue

    project_id = factory.LazyFunction(ids.project_id)


class PageStatusFactory(ProjectChildFactory):
    class Meta:
        model = PageStatus

    project_id = factory.LazyFunction(ids.project_id)
    page_id = factory.Sequence(lambda n: f"page_{n:012d}")
    status = "uploaded"
    updated = factory.LazyFunction(now_iso)


class PageLogFactory(ProjectChildFactory):
    class Meta:
        model = PageLog

    project_id = factory.LazyFunction(ids.project_id)
    page_id = factory.Sequence(lambda n: f"page_{n:012d}")
