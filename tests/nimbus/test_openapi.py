"""The OpenAPI schema, Swagger UI served offline, the browsable API's forms, and a bounded
schemathesis run that must find no server error."""

from __future__ import annotations

import re

import pytest
import schemathesis
from django.contrib.staticfiles import finders
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from hypothesis import HealthCheck, settings
from schemathesis import checks

from nimbus.wsgi import application
from tests.nimbus.api_support import api_user
from tests.nimbus.factories import ProjectFactory


def test_schema_is_valid_openapi_3() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in [
        "/api/me/",
        "/api/keys/",
        "/api/projects/{project_id}/pages/",
        "/api/projects/{project_id}/batches/",
        "/api/projects/{project_id}/queue/claim/",
        "/api/projects/{project_id}/pages/{page_id}/logs/",
        "/api/system/initialize/",
    ]:
        assert path in paths, path
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    listing = paths["/api/projects/{project_id}/pages/"]["get"]["responses"]["200"]
    assert "pagination" in str(listing) or "data" in str(listing) or listing


@pytest.mark.django_db
def test_swagger_ui_is_served_offline(client) -> None:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(
        not source.startswith(("http://", "https://", "//")) for source in sources
    )
    assert any("drf_spectacular_sidecar" in source for source in sources)
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


@pytest.mark.django_db
@pytest.mark.usefixtures("domain")
def test_browsable_api_renders_forms_for_create_endpoints(admin_client) -> None:
    project = admin_client.post(
        "/api/projects/", {"name": "p"}, content_type="application/json"
    ).json()["project_id"]
    for url in [
        "/api/projects/",
        f"/api/projects/{project}/pages/",
        f"/api/projects/{project}/batches/",
        "/api/keys/",
    ]:
        response = admin_client.get(url, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, url
        assert b'<form action="' in response.content and b"POST" in response.content, url


schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.mark.django_db
@pytest.mark.usefixtures("domain")
@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case) -> None:
    user = api_user("fuzzer", admin=True)
    headers = {"Authorization": f"Bearer {user.secret}"}
    if case.path_parameters and "project_id" in case.path_parameters:
        # a real project, so the fuzzed bodies reach past the 404 for a random id
        project = ProjectFactory.create(owner="fuzzer")
        case.path_parameters["project_id"] = project.pk
    response = case.call(headers=headers)
    case.validate_response(response, checks=[checks.not_a_server_error])
