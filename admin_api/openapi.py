"""The OpenAPI 3.1 document, generated from the declared routes and their pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from admin_api.api import Endpoint

_REF = "#/components/schemas/{model}"


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


_ERRORS = {
    "400": "Malformed JSON",
    "401": "No token, or an invalid, expired or revoked one",
    "403": "The caller holds none of the route's roles",
    "404": "Unknown id",
    "409": "Conflict with existing data",
    "413": "Body too large",
    "415": "Body is not JSON",
    "422": "Validation failed; `errors` lists each field",
    "429": "Too many attempts; see Retry-After",
}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}}


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in endpoint.path_params
    ]
    if endpoint.query is not None:
        schema = endpoint.query.model_json_schema()
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            param = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if "description" in prop:
                param["description"] = prop["description"]
            params.append(param)
    return params


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "x-roles": None if endpoint.roles is None else sorted(endpoint.roles),
    }
    if endpoint.handler.__doc__:
        op["description"] = endpoint.handler.__doc__.strip()
    if endpoint.roles is not None:
        op["security"] = [{"bearer": []}]
    params = _parameters(endpoint)
    if params:
        op["parameters"] = params
    if endpoint.body is not None:
        op["requestBody"] = {"required": True, "content": _json(endpoint.body)}
    elif endpoint.upload_media_type is not None:
        binary = {"schema": {"type": "string", "format": "binary"}}
        op["requestBody"] = {"required": True, "content": {endpoint.upload_media_type: binary}}
    status = str(endpoint.status)
    if endpoint.response is not None:
        ok: dict[str, Any] = {"description": "OK", "content": _json(endpoint.response)}
    elif endpoint.media_type != "application/json":
        ok = {"description": "OK", "content": {endpoint.media_type: {"schema": {"type": "string"}}}}
    else:
        status, ok = "204", {"description": "Done; no content"}
    responses: dict[str, Any] = {status: ok}
    problem = {"application/problem+json": {"schema": {"$ref": _REF.format(model="ProblemDetails")}}}
    wanted = set()
    if endpoint.roles is not None:
        wanted |= {"401"} | ({"403"} if endpoint.roles else set())
    if endpoint.path_params:
        wanted.add("404")
    if endpoint.body is not None or endpoint.upload_media_type is not None:
        wanted |= {"400", "413", "415", "422"}
    if endpoint.query is not None:
        wanted.add("422")
    for code in sorted(wanted):
        responses[code] = {"description": _ERRORS[code], "content": problem}
    op["responses"] = responses
    return op


def build_openapi(endpoints: list[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ProblemDetails}
    for endpoint in endpoints:
        models.update(m for m in (endpoint.body, endpoint.response) if m is not None)
    pairs = [(model, "validation") for model in sorted(models, key=lambda m: m.__name__)]
    _, schemas = models_json_schema(pairs, ref_template=_REF)  # type: ignore[arg-type]
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
