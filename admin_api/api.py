"""Declared routes: each names its roles, its body and query models and its response model.

The declaration is the single source for three things: the aiohttp route, the RBAC check (made before
anything in the request is parsed, so a caller without the role learns nothing about validation), and the
OpenAPI document.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from admin_api.problems import Problem
from admin_api.services import REQUEST_ID, SERVICES, Services
from crm import safe_json
from crm.audit import Actor
from crm.roles import Role
from crm.tokens import Claims, InvalidToken

M = TypeVar("M", bound=BaseModel)
Handler = Callable[["ApiRequest"], Awaitable[Any]]

_PATH_PARAM = re.compile(r"{(\w+)}")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, with the roles it holds now (not the roles its token was issued with)."""

    user_id: int
    roles: frozenset[Role]
    claims: Claims


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    #: None: public. Otherwise a caller holding any of these roles passes; an empty set means any signed-in user.
    roles: frozenset[Role] | None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    #: Non-JSON responses (metrics text, HTML) describe their media type here.
    media_type: str = "application/json"
    #: Routes that stream a raw request body (file uploads) name its media type; the handler reads it.
    upload_media_type: str | None = None

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


@dataclass
class ApiRequest:
    request: web.Request
    services: Services
    principal: Principal | None
    body: Any = None
    query: Any = None

    @property
    def user(self) -> Principal:
        assert self.principal is not None, "route declared as public"
        return self.principal

    @property
    def actor(self) -> Actor:
        return Actor(
            user_id=self.principal.user_id if self.principal else None,
            request_id=self.request.get(REQUEST_ID),
            client_ip=client_address(self.request, self.services.trust_forwarded_for),
        )

    def path_int(self, name: str) -> int:
        """A numeric id from the path; anything else is an id that cannot exist, so 404."""
        raw = self.request.match_info[name]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            raise Problem(404, f"{name} {raw!r} does not exist")
        return int(raw)


def client_address(request: web.Request, trust_forwarded_for: bool) -> str:
    """The peer, or behind one trusted proxy the address it appended: the *last* X-Forwarded-For entry.

    Earlier entries were written by the client and prove nothing.
    """
    if trust_forwarded_for:
        last = request.headers.get("X-Forwarded-For", "").rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.remote or "unknown"


def validation_problem(exc: ValidationError, where: str) -> Problem:
    errors = [
        {"loc": [where, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_input=False)
    ]
    first = errors[0]
    field_name = ".".join(str(part) for part in first["loc"][1:]) or where
    return Problem(422, f"{field_name}: {first['msg']}", errors=errors)


async def authenticate(request: web.Request, services: Services) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return await principal_of(token, services)


async def principal_of(token: str, services: Services) -> Principal:
    """Who a bearer token speaks for (signature, expiry, revocation, the account's state): Problem 401 if nobody."""
    try:
        claims = services.tokens.verify(token.strip(), services.clock())
    except InvalidToken as exc:
        raise Problem(401, str(exc), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
    state = await services.users.auth_state(claims.user_id, claims.jti)
    if state is None or not state.is_active:
        raise Problem(401, "this account is deactivated", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if state.revoked:
        raise Problem(401, "this token was revoked", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if claims.issued_at < state.tokens_valid_after:
        raise Problem(
            401,
            "this token predates a password change or deactivation; sign in again",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return Principal(claims.user_id, state.roles, claims)


async def _read_body(request: web.Request, model: type[M]) -> M:
    if request.content_type != "application/json":
        raise Problem(415, "send the body as application/json")
    raw = await request.read()  # aiohttp enforces client_max_size here (413)
    try:
        data = safe_json.loads(raw)
    except safe_json.TooDeep:
        raise Problem(400, "the body is not acceptable JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"the body is not valid JSON: {exc}") from None
    if b"\\u0000" in raw and _holds_nul(data):
        raise Problem(422, "the body holds a NUL character (\\u0000), which no field accepts")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc, "body") from None


def _holds_nul(data: object) -> bool:
    """PostgreSQL text cannot store U+0000: refuse it at the edge rather than fail in the database (500)."""
    if isinstance(data, str):
        return "\x00" in data
    if isinstance(data, dict):
        return any(_holds_nul(key) or _holds_nul(value) for key, value in data.items())
    if isinstance(data, list):
        return any(_holds_nul(item) for item in data)
    return False


def _read_query(request: web.Request, model: type[M]) -> M:
    if any("\x00" in key or "\x00" in value for key, value in request.query.items()):
        raise Problem(422, "the query holds a NUL character, which no parameter accepts")
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise validation_problem(exc, "query") from None


def _respond(endpoint: Endpoint, result: Any) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if result is None:
        return web.Response(status=204 if endpoint.status == 200 else endpoint.status)
    if isinstance(result, BaseModel):
        return web.Response(text=result.model_dump_json(), status=endpoint.status, content_type="application/json")
    return web.json_response(result, status=endpoint.status)


def _wrap(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        principal = None
        if endpoint.roles is not None:
            principal = await authenticate(request, services)
            if endpoint.roles and not (principal.roles & endpoint.roles):
                needed = ", ".join(sorted(endpoint.roles))
                raise Problem(403, f"this route needs one of the roles: {needed}")
        api_request = ApiRequest(request, services, principal)
        if endpoint.query is not None:
            api_request.query = _read_query(request, endpoint.query)
        if endpoint.body is not None:
            api_request.body = await _read_body(request, endpoint.body)
        return _respond(endpoint, await endpoint.handler(api_request))

    handle.__name__ = endpoint.operation_id
    return handle


@dataclass
class Api:
    """A group of declared routes; ``mount`` adds them to an application."""

    endpoints: list[Endpoint] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        roles: Iterable[Role] | None,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        media_type: str = "application/json",
        upload_media_type: str | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method=method.upper(),
                    path=path,
                    handler=handler,
                    summary=summary,
                    tag=tag,
                    roles=None if roles is None else frozenset(roles),
                    body=body,
                    query=query,
                    response=response,
                    status=status,
                    media_type=media_type,
                    upload_media_type=upload_media_type,
                )
            )
            return handler

        return register

    def include(self, *others: Api) -> Api:
        for other in others:
            self.endpoints.extend(other.endpoints)
        return self

    def mount(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _wrap(endpoint), name=endpoint.operation_id)


#: Roles-set meaning "any signed-in user".
ANY_USER: frozenset[Role] = frozenset()
