"""Bearer-token authentication of every route but /healthz, and of the WebSocket.

Tokens are compared in constant time (``hmac.compare_digest``) on their UTF-8 bytes.
"""

from __future__ import annotations

import hmac
from typing import Final

from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

BEARER: Final = HTTPBearer(auto_error=False, description="the value of OF_API_TOKEN")


def token_matches(expected: str, given: str | None) -> bool:
    """True if ``given`` is the token; constant time in the token's content."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def bearer_of(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class Unauthorized(HTTPException):
    def __init__(self, reason: str) -> None:
        super().__init__(401, reason, headers={"WWW-Authenticate": "Bearer"})


async def require_token(request: Request) -> None:
    """FastAPI dependency: 401 unless the request carries the API's bearer token."""
    creds: HTTPAuthorizationCredentials | None = await BEARER(request)
    expected: str = request.app.state.token
    if creds is None:
        raise Unauthorized("missing bearer token (Authorization: Bearer <OF_API_TOKEN>)")
    if not token_matches(expected, creds.credentials):
        raise Unauthorized("invalid bearer token")
