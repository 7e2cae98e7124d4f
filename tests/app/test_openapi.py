"""The OpenAPI document: generated from the models, served, committed, valid, and true to the answers."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from chalice.test import Client
from openapi_spec_validator import validate

import app as app_module
from app import app
from chalicelib import wiring
from chalicelib.api import docs, openapi
from chalicelib.api.openapi import RoutesDriftError, build_document
from esdeploy import contract

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "openapi.json"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(aws_adapters: wiring.Adapters) -> Iterator[Client]:
    with Client(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return json.loads(COMMITTED.read_text())


def conforms(document: dict[str, Any], path: str, method: str, status: int, body: Any) -> None:
    """`body` is valid against what the document says `method path` answers with `status`."""
    answer = document["paths"][path][method]["responses"][str(status)]
    answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]] if "$ref" in answer else answer
    schema = {**answer["content"]["application/json"]["schema"], "components": document["components"]}
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)


def test_the_committed_document_is_what_the_routes_generate() -> None:
    """docs/openapi.json drifts from the code the moment a route, a field or a status changes."""
    assert COMMITTED.read_text() == contract.render(), "docs/openapi.json is stale: run `make openapi` and commit it"
    assert contract.main(["--check"]) == 0


def test_the_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "openapi.json"
    stale.write_text(COMMITTED.read_text().replace('"/health"', '"/healthz"'))
    assert contract.main(["--check", "--path", str(stale)]) == 1


def test_a_route_without_an_operation_is_refused() -> None:
    routes = app_module.route_keys()
    with pytest.raises(RoutesDriftError, match=r"GET', '/secret'"):
        build_document([*routes, ("GET", "/secret")])
    with pytest.raises(RoutesDriftError, match=r"without a route in app.py: \[\('GET', '/health'\)\]"):
        build_document([route for route in routes if route != ("GET", "/health")])


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_the_api_serves_the_committed_document(client: Client, document: dict[str, Any]) -> None:
    answer = client.http.get("/openapi.json")
    assert answer.status_code == 200
    assert json.loads(answer.body) == document


def test_every_route_and_every_status_has_a_body_schema(document: dict[str, Any]) -> None:
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert documented == set(app_module.route_keys())
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert ("200" in responses or "204" in responses) and "415" in responses, (method, path)
            for status, answer in responses.items():
                if status == "204":  # No Content: no body, so no schema
                    assert "content" not in answer, (method, path)
                    continue
                content = answer.get("content") or document["components"]["responses"][
                    answer["$ref"].rsplit("/", 1)[1]
                ]["content"]
                assert all("schema" in media for media in content.values()), (method, path, status)
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= set(responses), (method, path)


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/deploy/{task_id}", "Deployment task with ID `nope` is not found"),
        ("/delete/{task_id}", "Deletion task with ID `nope` is not found"),
        ("/deploy-status/{embedding_model_id}", "Deployment task for model with ID `nope` is not found"),
        ("/delete-status/{embedding_model_id}", "Deletion task for model with ID `nope` is not found"),
    ],
)
def test_the_seeds_404_texts_are_the_examples(client: Client, document: dict[str, Any], path: str, text: str) -> None:
    example = document["paths"][path]["get"]["responses"]["404"]["content"]["application/json"]["example"]
    assert example == {"detail": text}
    live = client.http.get(path.replace("{task_id}", "nope").replace("{embedding_model_id}", "nope"))
    assert (live.status_code, live.json_body) == (404, example)


def test_answers_conform_to_the_document(client: Client, document: dict[str, Any], upload: Any) -> None:
    """A quick in-process check of the shapes; tests/e2e/test_contract_fuzz.py runs schemathesis on all."""
    upload("m1")
    deployed = client.http.post("/deploy", headers=JSON, body=json.dumps({"model_id": "m1", "id": "t-1"}))
    conforms(document, "/deploy", "post", 200, deployed.json_body)
    busy = client.http.post("/delete", headers=JSON, body=json.dumps({"embedding_model_id": "m1"}))
    assert busy.status_code == 409
    conforms(document, "/delete", "post", 409, busy.json_body)
    deleted = client.http.post("/delete", headers=JSON, body=json.dumps({"model_id": "m2", "reason": "gone"}))
    conforms(document, "/delete", "post", 200, deleted.json_body)
    conforms(document, "/deploy/{task_id}", "get", 200, client.http.get("/deploy/t-1").json_body)
    conforms(document, "/models", "get", 200, client.http.get("/models").json_body)
    conforms(document, "/health", "get", 200, client.http.get("/health").json_body)
    wrong = client.http.post("/deploy", headers=JSON, body=json.dumps({"model_id": "m3", "config": {"gpu": 1}}))
    conforms(document, "/deploy", "post", 422, wrong.json_body)
    with pytest.raises(jsonschema.ValidationError):  # the check can fail: an undocumented field does
        conforms(document, "/deploy", "post", 200, {**deployed.json_body, "surprise": True})


def test_docs_is_swagger_ui_served_by_the_api_itself(client: Client) -> None:
    page = client.http.get("/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    html = page.body.decode()
    assert "SwaggerUIBundle" in html and 'url: "openapi.json"' in html
    assert "http" not in html, "nothing may load from elsewhere (no CDN)"
    script = client.http.get("/docs/swagger-ui-bundle.js")
    assert script.status_code == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in script.body
    assert b"isOAS31" in script.body, "Swagger UI 5: the version that reads OpenAPI 3.1"
    style = client.http.get("/docs/swagger-ui.css")
    assert style.status_code == 200 and style.headers["Content-Type"].startswith("text/css")
    missing = client.http.get("/docs/nope.js")
    assert (missing.status_code, missing.json_body) == (404, {"detail": "no such file of Swagger UI: `nope.js`"})


def test_docs_without_swagger_ui_points_at_the_document(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Lambda package has no Swagger UI (a browser cannot sign SigV4 anyway)."""
    monkeypatch.setattr(docs, "_swagger_files", lambda: None)
    html = client.http.get("/docs").body.decode()
    assert '<a href="openapi.json">' in html and "<script" not in html
    assert client.http.get("/docs/swagger-ui-bundle.js").status_code == 404


def test_the_document_is_built_on_first_use_not_at_import() -> None:
    """The Lambda's cold start does not pay for it: app imports no generator."""
    import subprocess
    import sys

    probe = "import sys, app; print('chalicelib.api.openapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert openapi.openapi_document(app_module.route_keys()) is openapi.openapi_document(app_module.route_keys())
