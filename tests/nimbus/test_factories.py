"""Every domain model has a factory that saves through the model layer (KV + metadata)."""

from __future__ import annotations

import pytest

from nimbus import conf
from nimbus.models import DOMAIN_MODELS
from tests.nimbus import factories

FACTORIES = [
    factories.UserFactory,
    factories.EmailLookupFactory,
    factories.ApiKeyFactory,
    factories.ProjectFactory,
    factories.PageFactory,
    factories.BatchFactory,
    factories.QueueFactory,
    factories.PageStatusFactory,
    factories.PageLogFactory,
]


def test_every_domain_model_has_a_factory() -> None:
    assert {factory._meta.model for factory in FACTORIES} == set(DOMAIN_MODELS)


@pytest.mark.usefixtures("domain")
@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_factories_save_through_the_model_layer(factory) -> None:
    model = factory._meta.model
    built = factory.build()
    assert built.is_new()
    owner = None if model._meta.name == "USER" else "alice"
    created = factory.create(owner=owner) if owner else factory.create()
    assert not created.is_new()
    manager = model.objects.auth(owner) if owner else model.objects.system()
    assert manager.get(created.kv_id).get_data() == created.get_data()
    rows = conf.sql_database().execute(f"SELECT count(*) AS n FROM {model._meta.table}")
    assert rows == [{"n": 1}]
