"""The agent console's websocket, declared like every other route (the token is checked inside, before the
upgrade, because a browser cannot send an Authorization header on a websocket)."""

from __future__ import annotations

from aiohttp import web

from admin_api.api import Api, ApiRequest, principal_of
from admin_api.problems import Problem
from console_web import agent_ws, supervisor_ws
from crm.audit import Actor
from crm.roles import Role

api = Api()


@api.route("GET", "/ws/agent", summary="Agent console websocket (protocol v1; see the README)", tag="agents",
           roles=None)  # fmt: skip
async def agent_socket(req: ApiRequest) -> web.StreamResponse:
    """Offer subprotocols ``pivotal.v1`` and ``bearer.<token>`` (or pass ``?access_token=``). Agents,
    supervisors and admins may connect."""
    services = req.services

    async def authenticate(token: str) -> int:
        try:
            principal = await principal_of(token, services)
        except Problem as exc:
            raise agent_ws.Unauthorized(str(exc)) from None
        if not principal.roles & {Role.AGENT, Role.SUPERVISOR, Role.ADMIN}:
            raise agent_ws.Unauthorized("the agent console needs the agent role")
        return principal.user_id

    return await agent_ws.serve(req.request, authenticate)


@api.route("GET", "/ws/supervisor", summary="Supervisor dashboard websocket (protocol v1; see the README)",
           tag="agents", roles=None)  # fmt: skip
async def supervisor_socket(req: ApiRequest) -> web.StreamResponse:
    """Offer subprotocols ``pivotal.v1`` and ``bearer.<token>`` (or pass ``?access_token=``). Supervisors and
    admins may connect."""
    services = req.services

    async def authenticate(token: str) -> int:
        try:
            principal = await principal_of(token, services)
        except Problem as exc:
            raise agent_ws.Unauthorized(str(exc)) from None
        if not principal.roles & {Role.SUPERVISOR, Role.ADMIN}:
            raise agent_ws.Unauthorized("the supervisor dashboard needs the supervisor role")
        return principal.user_id

    where = req.actor
    return await supervisor_ws.serve(req.request, authenticate,
                                     lambda user_id: Actor(user_id, where.request_id, where.client_ip))  # fmt: skip
