"""Table-less placeholder models, one per DataModel, so Django admin lists them and Django
creates a view permission for each. They are never queried: the admin views read through the
model layer. This app has no migrations, so nothing here becomes a table."""

from __future__ import annotations

from django.db import models
from django.utils.text import camel_case_to_spaces

from datamodel import DataModel
from nimbus.models import DOMAIN_MODELS

__all__ = ["PLACEHOLDERS"]

PLACEHOLDERS: dict[type[models.Model], type[DataModel]] = {}


def _placeholder(datamodel: type[DataModel]) -> type[models.Model]:
    name = datamodel.__name__
    verbose = camel_case_to_spaces(name).replace("api key", "API key")
    meta = type(
        "Meta",
        (),
        {
            "managed": False,
            "app_label": "nimbus_data",
            "db_table": f"nimbus_data_placeholder_{name.lower()}",
            "default_permissions": ("view",),
            "verbose_name": verbose,
            "verbose_name_plural": verbose
            + ("es" if verbose.endswith(("s", "x", "ch", "sh")) else "s"),
        },
    )
    return type(name, (models.Model,), {"__module__": __name__, "Meta": meta})


for _datamodel in DOMAIN_MODELS:
    PLACEHOLDERS[_placeholder(_datamodel)] = _datamodel
