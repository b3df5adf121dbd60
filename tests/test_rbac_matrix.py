"""Walk every route of the OpenAPI document: 401 without a token, 403 for every role the route does not allow,
never 403 for a role it does allow. The set of public routes is pinned here, so a route made public by
mistake fails this test.

The matrix grows with the API: a new route is covered the moment it is declared.
"""

from __future__ import annotations

from typing import Any

from console_web import pages
from crm.roles import Role
from tests.conftest import bearer

#: Ids that do not exist, so probing a route with an allowed role changes nothing.
PLACEHOLDER = {
    "userId": "999999",
    "role": "agent",
    "importId": "999999",
    "captureId": "999999",
    "token": "not-a-token",
    "segmentId": "999999",
    "listId": "999999",
    "contactId": "999999",
    "setId": "999999",
    "accountId": "999999",
    "domain": "example.com",
    "suppressionId": "999999",
    "campaignId": "999999",
    "connectionId": "999999",
    "action": "start",
    "scriptId": "999999",
    "formId": "999999",
    "profileId": "999999",
    "domainId": "999999",
    "planId": "999999",
    "key": "Z",
    "link": "0",
    "leadId": "999999",
    "code": "no_such_reason",
    "orderId": "999999",
    "attemptId": "999999",
}

PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/openapi.json"),
    ("POST", "/api/auth/login"),
    ("POST", "/webhooks/telnyx"),  # signed by the carrier instead
    ("POST", "/webhooks/email/sendgrid"),  # signed by the provider (tests/test_email_webhooks.py)
    ("POST", "/webhooks/email/ses"),
    ("POST", "/webhooks/email/mailgun"),
    ("GET", "/ws/agent"),  # the token comes as a subprotocol or query parameter (tests/test_dialer.py)
    ("GET", "/ws/supervisor"),  # likewise (tests/test_console_pages.py)
    # the links inside e-mail: the signed token is the proof (tests/test_email_send.py)
    ("GET", "/e/u/{token}"),
    ("POST", "/e/u/{token}"),
    ("GET", "/e/o/{token}"),
    ("GET", "/e/c/{token}"),
    ("GET", "/e/c/{token}/{link}"),
}
#: The browser pages and their static files: public HTML and JavaScript, not API (every call they make is).
PAGES = {("GET", "/"), ("GET", "/static"), *(("GET", path) for path in pages.PAGES)}

#: Routes whose success with an allowed role would spoil the tokens used for the rest of the walk.
NOT_PROBED_WITH_ALLOWED_ROLES = {("POST", "/api/auth/logout"), ("POST", "/api/auth/password")}


def _concrete(path: str) -> str:
    for name, value in PLACEHOLDER.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"add a placeholder for {path}"
    return path


async def test_every_route_enforces_its_roles(client: Any, tokens: dict[Role, str]) -> None:
    """401 without a token, 403 outside x-roles, anything but 401/403 inside; public routes are exactly PUBLIC."""
    document = await (await client.get("/api/openapi.json")).json()
    public = set()
    denied = allowed_checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            key = (method.upper(), path)
            allowed = operation["x-roles"]
            url = _concrete(path)
            if allowed is None:
                public.add(key)
                continue
            response = await client.request(method, url)
            assert response.status == 401, f"{key} without token: {response.status}"
            assert response.content_type == "application/problem+json"
            for role in Role:
                permitted = not allowed or role in allowed
                if permitted and key in NOT_PROBED_WITH_ALLOWED_ROLES:
                    continue
                response = await client.request(method, url, headers=bearer(tokens[role]))
                if permitted:
                    assert response.status not in (401, 403), f"{key} as {role}: {response.status}"
                    allowed_checked += 1
                else:
                    assert response.status == 403, f"{key} as {role}: {response.status}"
                    denied += 1
    assert public == PUBLIC
    assert denied > 0
    assert allowed_checked > 0


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
    assert served - PAGES == documented
    login = document["paths"]["/api/auth/login"]["post"]
    assert login["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/LoginBody")
    assert "LoginBody" in document["components"]["schemas"]
