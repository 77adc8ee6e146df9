"""The OpenAPI schema, Swagger UI served offline, and the browsable API's forms (the bounded
schemathesis run over the schema is in test_schemathesis.py)."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema


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
        "/api/projects/{project_id}/queue/{page_id}/progress/",
        "/api/projects/{project_id}/pages/{page_id}/logs/",
        "/api/projects/{project_id}/restore/",
        "/api/projects/{project_id}/pages/{page_id}/restore/",
        "/api/system/initialize/",
    ]:
        assert path in paths, path
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_every_operation_describes_its_answers() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    components = schema["components"]["schemas"]

    def body(response: dict) -> dict:
        found = response["content"]["application/json"]["schema"]
        return components[found["$ref"].rsplit("/", 1)[1]] if "$ref" in found else found

    operations = [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]
    assert len(operations) == 29
    for method, path, operation in operations:
        responses = operation["responses"]
        successes = {code: r for code, r in responses.items() if code.startswith("2")}
        assert successes, (method, path)
        for code, response in successes.items():
            if code != "204":
                assert body(response).get("properties"), (method, path, code)
        for code in ("401", "429", "503" if path != "/api/status/" else "429"):
            assert body(responses[code]) == components["Error"], (method, path, code)
        if "{" in path:
            assert body(responses["404"]) == components["Error"], (method, path)
        if method in ("POST", "PATCH"):
            assert body(responses["400"]) == components["FieldErrors"], (method, path)
    lists = [
        "/api/keys/",
        "/api/projects/",
        "/api/projects/{project_id}/pages/",
        "/api/projects/{project_id}/batches/",
        "/api/projects/{project_id}/pages/{page_id}/logs/",
    ]
    for path in lists:
        envelope = body(schema["paths"][path]["get"]["responses"]["200"])
        assert set(envelope["required"]) == {"data", "pagination"}, path
        assert "next_cursor" in envelope["properties"]["pagination"]["properties"], path
        item = envelope["properties"]["data"]["items"]["$ref"].rsplit("/", 1)[1]
        assert components[item]["properties"], path
    page = body(
        schema["paths"]["/api/projects/{project_id}/pages/{page_id}/"]["get"]["responses"]["200"]
    )
    assert {"page_id", "source_path", "status", "extraction", "optimization"} <= set(
        page["properties"]
    )
    assert "_auth" not in page["properties"]
    assert components["PageStatusEnum"]["enum"][0] == "uploaded"
    assert page["properties"]["status"]["$ref"].endswith("/PageStatusEnum")
    row = components["PageListItem"]["properties"]
    assert "status" in row and "extraction" not in row  # a list shows the metadata row
    created = body(schema["paths"]["/api/keys/"]["post"]["responses"]["201"])
    assert "key" in created["properties"]
    status_path = "/api/projects/{project_id}/pages/{page_id}/status/"
    status_object = body(schema["paths"][status_path]["get"]["responses"]["200"])
    assert {"status", "processing", "result", "error", "page_version"} <= set(
        status_object["properties"]
    )
    progress_path = "/api/projects/{project_id}/queue/{page_id}/progress/"
    assert body(schema["paths"][progress_path]["post"]["responses"]["200"]) == status_object
    assert "409" in schema["paths"][progress_path]["post"]["responses"]


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
def test_browsable_api_renders_forms_for_create_endpoints(nimbus_admin_client) -> None:
    project = nimbus_admin_client.post(
        "/api/projects/", {"name": "p"}, content_type="application/json"
    ).json()["project_id"]
    for url in [
        "/api/projects/",
        f"/api/projects/{project}/pages/",
        f"/api/projects/{project}/batches/",
        "/api/keys/",
    ]:
        response = nimbus_admin_client.get(url, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, url
        assert b'<form action="' in response.content and b"POST" in response.content, url
