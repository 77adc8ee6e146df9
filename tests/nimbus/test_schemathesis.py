"""A bounded schemathesis run over the API's own OpenAPI schema, in-process on the WSGI app
with an API key: no answer is a server error, and each documented answer has the documented
shape. Every operation runs at its canonical URL and at the same URL without the trailing
slash, and is served at both."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import schemathesis
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis import checks

from nimbus.wsgi import application
from tests.nimbus.api_support import ApiUser, api_user


def api_schema() -> dict[str, Any]:
    """The schema ``/api/schema/`` serves, each path also listed without its trailing slash."""
    generated = SchemaGenerator().get_schema(request=None, public=True)
    raw: dict[str, Any] = json.loads(OpenApiJsonRenderer().render(generated))
    paths = {}
    for path, item in raw["paths"].items():
        paths[path] = item
        slashless = copy.deepcopy(item)
        for operation in slashless.values():
            operation["operationId"] += "_slashless"
        paths[path.rstrip("/")] = slashless
    raw["paths"] = paths
    return raw


MAX_EXAMPLES = 10  # per operation and generation phase: the whole run takes about 25 s

schema = schemathesis.openapi.from_dict(api_schema())
schema.app = application


def served_where_asked(ctx: Any, response: Any, case: Any) -> None:
    """Each operation is served at its URL, with or without the trailing slash: no redirect
    (APPEND_SLASH's would drop a body) and no 404 for an unknown endpoint."""
    if 300 <= response.status_code < 400:
        raise AssertionError(f"{case.method} {case.formatted_path}: {response.status_code}")
    if response.status_code == 404 and "No API endpoint" in response.text:
        raise AssertionError(f"{case.method} {case.formatted_path}: no such endpoint")


def real_ids(user: ApiUser, wanted: set[str]) -> dict[str, str]:
    """Objects of the fuzzing user for the path parameters ``wanted``, so generated bodies reach
    past the 404 of a random id: a project with a batch of one page, claimed from the queue
    (so ack and fail apply), and a second API key."""
    found: dict[str, str] = {}
    if "key_id" in wanted:
        key = user.client.post("/api/keys/", {"name": "k"}, format="json").json()
        found["key_id"] = key["key_hash"]
    if "project_id" in wanted:
        project = user.client.post("/api/projects/", {"name": "p"}, format="json").json()
        found["project_id"] = project["project_id"]
        base = f"/api/projects/{project['project_id']}"
        if wanted & {"page_id", "batch_id"}:
            pages = {"pages": [{"source_path": "a.html"}]}
            batch = user.client.post(f"{base}/batches/", pages, format="json").json()
            found["batch_id"] = batch["batch_id"]
            found["page_id"] = user.client.post(f"{base}/queue/claim/").json()["page_id"]
    return found


@pytest.mark.django_db
@pytest.mark.usefixtures("domain")
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases every run
)
def test_no_server_errors(case) -> None:
    # The examples of one operation share the stores and make keys for one user, past any
    # cap on keys per user a deployment would set; the cap is tested in test_api_keys.
    with override_settings(NIMBUS_MAX_KEYS_PER_USER=1_000_000):
        user = api_user("fuzzer", admin=True)
        case.path_parameters = {
            **case.path_parameters,
            **real_ids(user, set(case.path_parameters or ())),
        }
        response = case.call(headers={"Authorization": f"Bearer {user.secret}"})
    case.validate_response(
        response,
        checks=[checks.not_a_server_error, served_where_asked, checks.response_schema_conformance],
    )
