"""JWT access tokens (HS256): issue and verify. The clock is passed in."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

from crm.roles import Role, legacy_role

ALGORITHM = "HS256"


class InvalidToken(Exception):
    """The token is malformed, badly signed or expired; the message says which."""


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: int
    roles: tuple[Role, ...]
    #: Milliseconds matter: a password change invalidates tokens issued before it, even in the same second
    #: (RFC 7519 allows a non-integer NumericDate).
    issued_at: float
    expires_at: float
    jti: uuid.UUID


#: Tokens whose signature was already checked, remembered so that each request does not check it again (a
#: tenth of an API call's CPU). A token's claims are a pure function of the token and the secret, so the cache
#: cannot go stale; expiry is still judged on every call, revocation is the caller's (crm.users.auth_state).
_VERIFIED_CACHE = 4096


class TokenService:
    def __init__(self, secret: str, ttl_s: int) -> None:
        self._secret = secret
        self.ttl_s = ttl_s
        self._verified: dict[str, Claims] = {}

    def issue(self, user_id: int, roles: Sequence[Role], now: float) -> tuple[str, Claims]:
        claims = Claims(
            user_id=user_id,
            roles=tuple(roles),
            issued_at=round(now, 3),
            expires_at=round(now, 3) + self.ttl_s,
            jti=uuid.uuid4(),
        )
        legacy = legacy_role(roles)
        payload = {
            "sub": str(user_id),
            "roles": [str(role) for role in roles],
            "role": str(legacy) if legacy else None,
            "iat": claims.issued_at,
            "exp": claims.expires_at,
            "jti": str(claims.jti),
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM), claims

    def verify(self, token: str, now: float) -> Claims:
        claims = self._verified.get(token)
        if claims is None:
            claims = self._decode(token)
            if len(self._verified) >= _VERIFIED_CACHE:
                del self._verified[next(iter(self._verified))]  # the oldest remembered
            self._verified[token] = claims
        if claims.expires_at <= now:
            raise InvalidToken("token expired")
        return claims

    def _decode(self, token: str) -> Claims:
        try:
            # Expiry is judged in verify, against the injected clock, not the library's.
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"verify_exp": False, "verify_iat": False, "require": ["sub", "exp", "iat", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {exc}") from None
        try:
            claims = Claims(
                user_id=int(payload["sub"]),
                roles=tuple(Role(role) for role in payload.get("roles") or ()),
                issued_at=float(payload["iat"]),
                expires_at=float(payload["exp"]),
                jti=uuid.UUID(str(payload["jti"])),
            )
        except (ValueError, TypeError):
            raise InvalidToken("invalid token: malformed claims") from None
        return claims
