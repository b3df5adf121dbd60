"""The real daemon plus one public test route that sleeps, to drive the shutdown stories. Test-only."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from config import load_settings
from pivotal.app import build_app
from pivotal.logs import configure_logging
from pivotal.server import Server

api = Api()


class SleepQuery(BaseModel):
    seconds: float = Field(ge=0, le=120)


@api.route("GET", "/test/sleep", summary="Sleep, then answer", tag="test", roles=None, query=SleepQuery)
async def sleep(req: ApiRequest) -> dict[str, float]:
    await asyncio.sleep(req.query.seconds)
    return {"slept": req.query.seconds}


async def main() -> None:
    settings = load_settings()
    configure_logging("info", "json")
    await Server(build_app(settings, extra_routes=api), settings).serve()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
