"""The carrier adapter: Telnyx Call Control through the official SDK (``AsyncTelnyx``), with our own retries.

The SDK's retries are switched off (``max_retries=0``): it would repeat a POST without an idempotency key.
Every call command carries a ``command_id`` (Telnyx ignores a repeat within 60 s), so a command is retried -
with the same id - after a timeout, a dropped connection, a 5xx or a 429; nothing else is retried. Creating a
credential has no idempotency and is never retried; its token request carries an idempotency key. Dials pass a
carrier-wide limiter (default 30 a second over a rolling 5 s, Telnyx's own rule) before they are sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import httpx
import structlog

if TYPE_CHECKING:
    import telnyx
    from telnyx import AsyncTelnyx

from pacing.sliding_window import SlidingWindow

log = structlog.get_logger(__name__)
T = TypeVar("T")

BACKOFF_S = (0.25, 0.5, 1.0, 2.0)
CALL_ENDED_CODE = "90018"
DIAL_LIMIT_CODE = "90103"


class CarrierError(Exception):
    """The carrier refused a command (after any retries); ``code`` is Telnyx's error code when it gave one."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class CallEnded(CarrierError):
    """The call had already ended (422, code 90018): usually a race with the callee's hangup, not a fault."""


@dataclass(frozen=True)
class DialedLeg:
    call_control_id: str
    call_leg_id: str | None
    call_session_id: str | None
    command_id: str


@dataclass(frozen=True)
class Credential:
    id: str
    sip_username: str
    sip_password: str = ""


#: The longest Retry-After we wait for in-line; a carrier asking for more is treated as down.
MAX_RETRY_AFTER_S = 5.0


def _retry_after(exc: telnyx.APIStatusError) -> float:
    """Seconds the carrier asked us to wait (Retry-After), capped; 0 when it did not say."""
    try:
        return min(float(exc.response.headers.get("retry-after", "0")), MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0


def _error_code(exc: telnyx.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = errors[0].get("code")
            return str(code) if code is not None else None
    return None


def _sdk() -> ModuleType:
    """The Telnyx SDK, imported on first use: its thousands of models take about 2 s to import, which a daemon
    that only sends e-mail, or is restarting after a crash, should not wait for (``warm_up`` does it in a thread
    once the daemon is up)."""
    return importlib.import_module("telnyx")


def warm_up() -> None:
    """Import the SDK's resource modules now (about 1 s, lazily done on first use otherwise, which would stall
    the event loop inside the first dial or softphone request). Run it in a thread at start."""
    client = _sdk().Telnyx(api_key="warm-up", base_url="http://127.0.0.1:9/v2")
    try:
        _ = client.calls.actions, client.telephony_credentials
    finally:
        client.close()


class Carrier:
    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        dials_per_window: int = 150,
        window_s: float = 5.0,
        timeout_s: float = 5.0,
        command_timeout_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        observe: Callable[[str, str, float], None] | None = None,
    ) -> None:
        # The SDK keeps 20 idle connections: a dialer sending dials, bridges and hangups for hundreds of calls
        # would open a new one for most commands, on the routing path too. Keep enough for the busiest second.
        # Over aiohttp (the SDK's DefaultAioHttpClient): httpx's own pool walks every connection, polling each
        # socket, on every request and again when its response closes, and for each idle one counts them all;
        # with 200 kept connections that held the event loop for 100-600 ms in bursts (live dialer benchmark).
        # aiohttp's connector takes an idle connection in constant time.
        telnyx = _sdk()
        http = telnyx.DefaultAioHttpClient(
            timeout=timeout_s, limits=httpx.Limits(max_connections=400, max_keepalive_connections=200)
        )
        self.client: AsyncTelnyx = telnyx.AsyncTelnyx(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s, http_client=http
        )
        # Call actions wait at most this long before resending with the same command_id: Telnyx advises a resend
        # after 500 ms, and a bridge must land within the 2-second abandon rule (dials and credentials: timeout_s).
        self._commands = self.client.with_options(timeout=command_timeout_s)
        self._timeout_s, self._command_timeout_s = timeout_s, command_timeout_s
        self.dials = SlidingWindow(dials_per_window, window_s)
        self._clock = clock
        self._sleep = sleep
        self._observe = observe or (lambda command, result, seconds: None)
        self.retries = 0

    async def close(self) -> None:
        await self.client.close()

    async def _with_retries(
        self, name: str, send: Callable[[], Awaitable[T]], *, retry: bool = True, command: bool = False
    ) -> T:
        """Send, retrying (the caller's command is idempotent) on timeouts, connection errors, 5xx and 429; every
        outcome is counted (``observe``) and every failure logged."""
        started = self._clock()
        try:
            budget = 2 * (self._command_timeout_s if command else self._timeout_s)
            result = await self._attempts(name, send, retry, budget)
        except CallEnded as exc:  # a race with the callee's hangup: routine, the caller decides what it means
            self._observe(name, "call_ended", self._clock() - started)
            log.info("carrier_call_ended", command=name, error=str(exc))
            raise
        except CarrierError as exc:
            outcome = "refused" if exc.status is not None and exc.status < 500 and exc.status != 429 else "failed"
            self._observe(name, outcome, self._clock() - started)
            log.warning("carrier_command_" + outcome, command=name, status=exc.status, code=exc.code, error=str(exc))
            raise
        self._observe(name, "ok", self._clock() - started)
        return result

    async def _attempts(self, name: str, send: Callable[[], Awaitable[T]], retry: bool, budget_s: float) -> T:
        for attempt in range(len(BACKOFF_S) + 1 if retry else 1):
            try:
                # The SDK's timeout bounds each phase (connect, each read); a carrier trickling bytes could hold
                # an attempt, and a dial's limiter slot, indefinitely without this bound on the whole attempt.
                async with asyncio.timeout(budget_s):
                    return await send()
            except _sdk().APIStatusError as exc:
                code = _error_code(exc)
                if exc.status_code == 422 and code == CALL_ENDED_CODE:
                    raise CallEnded(f"{name}: the call has already ended", status=422, code=code) from None
                retryable = retry and (exc.status_code >= 500 or exc.status_code == 429)
                if not retryable or attempt == len(BACKOFF_S):
                    raise CarrierError(f"{name}: {exc.status_code} {code or ''} {exc.message}".strip(),
                                       status=exc.status_code, code=code) from None  # fmt: skip
                reason = f"{exc.status_code} {code or ''}".strip()
                asked = _retry_after(exc)
                if code == DIAL_LIMIT_CODE:  # another sender shares the account's window: give it time to slide
                    asked = max(asked, 1.0)
            except (_sdk().APITimeoutError, _sdk().APIConnectionError, TimeoutError) as exc:
                if not retry or attempt == len(BACKOFF_S):
                    raise CarrierError(f"{name}: {type(exc).__name__} after {attempt + 1} attempts") from None
                reason, asked = type(exc).__name__, 0.0
            self.retries += 1
            self._observe(name, "retried", 0.0)
            pause = max(BACKOFF_S[attempt] * (1 + random.random() / 4), asked)  # noqa: S311 - jitter
            log.info("carrier_retry", command=name, reason=reason, attempt=attempt + 1, in_s=round(pause, 2))
            await self._sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    async def dial(
        self,
        *,
        connection_id: str,
        from_: str,
        to: str,
        client_state: bytes | None = None,
        timeout_secs: int = 25,
        amd: str = "disabled",
        amd_config: dict[str, Any] | None = None,
        webhook_url: str | None = None,
        link_to: str | None = None,
        park_after_unbridge: bool = False,
        prevent_double_bridge: bool = False,
        record: bool = False,
        command_id: str | None = None,
    ) -> DialedLeg:
        """Dial within the carrier-wide limit. ``command_id``: reuse it to retry a dial that may have been sent."""
        while (wait := self.dials.acquire(self._clock())) > 0:
            await self._sleep(wait)
        command_id = command_id or str(uuid.uuid4())
        extra: dict[str, Any] = {}
        if client_state is not None:
            extra["client_state"] = base64.b64encode(client_state).decode()
        if amd_config:
            extra["answering_machine_detection_config"] = amd_config
        if webhook_url:
            extra["webhook_url"] = webhook_url
        if link_to:
            extra["link_to"] = link_to
            if park_after_unbridge:
                extra["park_after_unbridge"] = "self"
            if prevent_double_bridge:
                extra["prevent_double_bridge"] = True
        if record:
            extra["record"] = "record-from-answer"

        async def send() -> Any:
            return await self.client.calls.dial(
                connection_id=connection_id, from_=from_, to=to, timeout_secs=timeout_secs,
                answering_machine_detection=amd,  # type: ignore[arg-type]
                command_id=command_id, **extra,
            )  # fmt: skip

        try:
            response = await self._with_retries("dial", send)
        finally:
            self.dials.release(self._clock())
        data = response.data
        if data is None or not data.call_control_id:
            raise CarrierError("dial: the carrier answered without a call_control_id")
        return DialedLeg(data.call_control_id, data.call_leg_id, data.call_session_id, command_id)

    async def _action(self, name: str, call: Callable[[str], Awaitable[Any]], command_id: str | None) -> str:
        command_id = command_id or str(uuid.uuid4())
        await self._with_retries(name, lambda: call(command_id), command=True)
        return command_id

    async def answer(self, ccid: str, *, command_id: str | None = None) -> str:
        actions = self._commands.calls.actions
        return await self._action("answer", lambda cid: actions.answer(ccid, command_id=cid), command_id)

    async def hangup(self, ccid: str, *, command_id: str | None = None) -> str:
        """Hang up; a call that has already ended counts as done (the callee got there first)."""
        actions = self._commands.calls.actions
        try:
            return await self._action("hangup", lambda cid: actions.hangup(ccid, command_id=cid), command_id)
        except CallEnded:
            return command_id or ""

    async def bridge(
        self,
        ccid: str,
        other: str,
        *,
        park_after_unbridge: bool = False,
        prevent_double_bridge: bool = True,
        command_id: str | None = None,
    ) -> str:
        actions = self._commands.calls.actions
        extra: dict[str, Any] = {"park_after_unbridge": "self"} if park_after_unbridge else {}

        def send(cid: str) -> Awaitable[Any]:
            sent = actions.bridge(ccid, call_control_id_to_bridge_with=other, command_id=cid,
                                  prevent_double_bridge=prevent_double_bridge, **extra)  # fmt: skip
            return cast(Awaitable[Any], sent)

        return await self._action("bridge", send, command_id)

    async def speak(self, ccid: str, text: str, *, voice: str = "female", command_id: str | None = None) -> str:
        actions = self._commands.calls.actions
        return await self._action(
            "speak", lambda cid: actions.speak(ccid, payload=text, voice=voice, command_id=cid), command_id
        )

    async def playback(self, ccid: str, audio_url: str, *, command_id: str | None = None) -> str:
        actions = self._commands.calls.actions
        return await self._action(
            "playback_start", lambda cid: actions.start_playback(ccid, audio_url=audio_url, command_id=cid), command_id
        )

    async def start_recording(self, ccid: str, *, command_id: str | None = None) -> str:
        actions = self._commands.calls.actions

        def send(cid: str) -> Awaitable[Any]:
            return cast(Awaitable[Any], actions.start_recording(ccid, channels="dual", format="mp3", command_id=cid))

        return await self._action("record_start", send, command_id)

    async def stop_recording(self, ccid: str, *, command_id: str | None = None) -> str:
        actions = self._commands.calls.actions
        return await self._action("record_stop", lambda cid: actions.stop_recording(ccid, command_id=cid), command_id)

    async def create_credential(self, connection_id: str, name: str) -> Credential:
        """Never retried: creating a credential twice would leave an orphan."""

        async def send() -> Any:
            return await self.client.telephony_credentials.create(connection_id=connection_id, name=name)

        response = await self._with_retries("create_credential", send, retry=False)
        data = response.data
        if data is None or not data.id or not data.sip_username:
            raise CarrierError("create credential: the carrier answered without an id")
        return Credential(str(data.id), str(data.sip_username), str(data.sip_password or ""))

    async def delete_credential(self, credential_id: str) -> None:
        """Delete a telephony credential; one already gone counts as deleted (so a retry is safe)."""

        async def send() -> None:
            with contextlib.suppress(_sdk().NotFoundError):
                await self.client.telephony_credentials.delete(credential_id)

        await self._with_retries("delete_credential", send)

    async def login_token(self, credential_id: str) -> str:
        """A fresh WebRTC login token (JWT) for an agent's softphone."""
        key = str(uuid.uuid4())

        async def send() -> str:
            token: str = await self.client.telephony_credentials.create_token(credential_id, idempotency_key=key)
            return token

        return await self._with_retries("create_token", send)
