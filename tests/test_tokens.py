"""JWT access tokens: claims, expiry against the injected clock, tampering."""

from __future__ import annotations

import jwt
import pytest

from crm.roles import Role, legacy_role
from crm.tokens import InvalidToken, TokenService

SECRET = "s" * 40


def test_issue_carries_roles_and_legacy_role() -> None:
    """The token has sub, roles, the legacy role, iat, exp and jti."""
    token, claims = TokenService(SECRET, 3600).issue(7, [Role.AGENT, Role.SUPERVISOR], now=1000.0)
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert payload["sub"] == "7"
    assert payload["roles"] == ["agent", "supervisor"]
    assert payload["role"] == "supervisor"
    assert (payload["iat"], payload["exp"]) == (1000, 4600)
    _, precise = TokenService(SECRET, 3600).issue(7, [Role.AGENT], now=1000.1234)
    assert precise.issued_at == 1000.123
    assert payload["jti"] == str(claims.jti)


@pytest.mark.parametrize(("now", "valid"), [(1000.0, True), (4599.0, True), (4600.0, False), (9999.0, False)])
def test_expiry_uses_the_given_clock(now: float, valid: bool) -> None:
    """Expiry is judged against the clock passed in, not the wall clock, also once the token was verified
    (and its signature remembered)."""
    service = TokenService(SECRET, 3600)
    token, _ = service.issue(1, [Role.ADMIN], now=1000.0)
    for _ in range(2):  # the second time from what the first remembered
        check(service, token, now, valid)


def check(service: TokenService, token: str, now: float, valid: bool) -> None:
    if valid:
        assert service.verify(token, now).user_id == 1
    else:
        with pytest.raises(InvalidToken, match="expired"):
            service.verify(token, now)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: jwt.encode({"sub": "1", "exp": 9e9, "iat": 0, "jti": "x"}, "other" * 10, algorithm="HS256"),
        lambda t: jwt.encode({"sub": "1", "exp": 9e9, "iat": 0}, SECRET, algorithm="HS256"),
        lambda t: jwt.encode({"sub": "x", "exp": 9e9, "iat": 0, "jti": "not-a-uuid"}, SECRET, algorithm="HS256"),
        lambda t: "not.a.token",
    ],
    ids=["bad-signature", "other-secret", "no-jti", "bad-claims", "garbage"],
)
def test_tampered_tokens_are_refused(mangle: object) -> None:
    """Anything but an intact token of ours is InvalidToken, also once the intact one was verified."""
    service = TokenService(SECRET, 3600)
    token, _ = service.issue(1, [Role.ADMIN], now=1000.0)
    assert service.verify(token, 1001.0).user_id == 1
    with pytest.raises(InvalidToken):
        service.verify(mangle(token), 1001.0)  # type: ignore[operator]


def test_remembers_a_bounded_number_of_tokens() -> None:
    """Verified tokens are remembered up to a bound, the oldest forgotten first; all stay valid."""
    service = TokenService(SECRET, 3600)
    tokens = [service.issue(n, [Role.AGENT], now=1000.0)[0] for n in range(1, 5000)]
    for n, token in enumerate(tokens, start=1):
        assert service.verify(token, 1001.0).user_id == n
    assert len(service._verified) == 4096
    assert tokens[0] not in service._verified
    assert tokens[-1] in service._verified
    assert service.verify(tokens[0], 1001.0).user_id == 1


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ([], None),
        ([Role.CLIENT], Role.CLIENT),
        ([Role.AGENT, Role.CLIENT], Role.AGENT),
        ([Role.CONTENT_CREATOR, Role.QUALITY_ANALYST], Role.QUALITY_ANALYST),
        (list(Role), Role.ADMIN),
    ],
)
def test_legacy_role_is_the_most_privileged(roles: list[Role], expected: Role | None) -> None:
    """The legacy single role is derived from the roles array."""
    assert legacy_role(roles) == expected
