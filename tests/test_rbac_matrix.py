"""Walk every route of the OpenAPI document: 401 without a token, 403 for every role the route does not allow.

The matrix grows with the API: a new route is covered the moment it is declared.
"""

from __future__ import annotations

from typing import Any

from crm.roles import Role
from tests.conftest import bearer

PLACEHOLDER = {"userId": "1", "role": "agent"}


def _concrete(path: str) -> str:
    for name, value in PLACEHOLDER.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"add a placeholder for {path}"
    return path


async def test_every_route_enforces_its_roles(client: Any, tokens: dict[Role, str]) -> None:
    """Each protected route answers 401 without a token and 403 to each role outside its x-roles."""
    document = await (await client.get("/api/openapi.json")).json()
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            allowed = operation["x-roles"]
            url = _concrete(path)
            if allowed is None:
                continue
            response = await client.request(method, url)
            assert response.status == 401, f"{method} {path} without token: {response.status}"
            assert response.content_type == "application/problem+json"
            for role in Role:
                if not allowed or role in allowed:
                    continue
                response = await client.request(method, url, headers=bearer(tokens[role]))
                assert response.status == 403, f"{method} {path} as {role}: {response.status}"
                checked += 1
    assert checked > 0


async def test_openapi_lists_every_route(client: Any) -> None:
    """The document is OpenAPI 3.1 and contains every route the application serves."""
    document = await (await client.get("/api/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    served = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert served == documented
    login = document["paths"]["/api/auth/login"]["post"]
    assert login["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/LoginBody")
    assert "LoginBody" in document["components"]["schemas"]
