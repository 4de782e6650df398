"""How API requests authenticate, and who they act as."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from kvmmgr.access import Actor
from kvmmgr.api import tokens
from kvmmgr.models import ApiToken


class TokenAuthentication(BaseAuthentication):
    """``Authorization: Token KEY``; a missing header leaves the session to decide."""

    keyword = b"token"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Send one key: 'Authorization: Token KEY'.")
        token = tokens.authenticate(parts[1].decode("ascii", "replace"))
        if token is None:
            raise AuthenticationFailed(
                "Unknown, revoked or expired API token (manage.py apitoken list USER)."
            )
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Token realm="kvmmgr"'


def actor(request: Request) -> Actor:
    """The acting user, with where from and (for a token) which token, for the audit log."""
    source = request.META.get("REMOTE_ADDR", "")
    if isinstance(request.auth, ApiToken):
        source = f"{source} token:{request.auth.name}"
    return Actor.for_user(request.user, source=source[:64])


class TokenScheme(OpenApiAuthenticationExtension):  # type: ignore[misc]
    """How the OpenAPI schema describes ``TokenAuthentication``."""

    target_class = "kvmmgr.api.auth.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "'Token KEY': manage.py apitoken create USER NAME",
        }
