"""schemathesis, driven by the app's own OpenAPI schema, finds no server error."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from connector.intake.app import create_app
from connector.settings import parse_settings
from tests.security.conftest import TOKEN, settings_text

# The app's own schema, as it serves it at /schema/openapi.json (built once, here, to parametrize on).
SPEC = create_app(parse_settings(settings_text(), "/nonexistent/settings.toml")).openapi_schema.to_schema()
# Random tokens only ever meet the 404; give the generator the real one too, so bodies reach the decoder.
for operation in SPEC["paths"]["/webhooks/doopage/{token}"].values():
    for parameter in operation["parameters"]:
        if parameter["name"] == "token":
            parameter["schema"] = {"type": "string", "enum": [TOKEN, "not-the-token-0123456789"]}
schema = schemathesis.openapi.from_dict(SPEC)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, module_server):
    # Sent over real HTTP to the real app (module_server), so the lifespan and the inbox are real too.
    case.call_and_validate(base_url=module_server, checks=[not_a_server_error])


def test_the_schema_documents_the_webhook_routes(module_server):
    document = httpx.get(f"{module_server}/schema/openapi.json").json()
    post = document["paths"]["/webhooks/doopage/{token}"]["post"]
    assert post["operationId"] == "receiveEvent"
    assert post["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "company_id",
        "event_type",
        "data",
    ]
    assert "get" in document["paths"]["/webhooks/doopage/{token}"]
    assert "/metrics" in document["paths"]
