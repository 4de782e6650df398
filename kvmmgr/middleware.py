"""Identity from nginx: the REMOTE_USER uwsgi parameter, and nothing a client can send.

nginx authenticates with basic auth and passes ``$remote_user`` as the uwsgi
parameter ``REMOTE_USER`` (deploy/nginx/kvmmgr-uwsgi-params). WSGI puts HTTP
request headers under ``HTTP_*`` keys, so a forged ``Remote-User:`` header is
``HTTP_REMOTE_USER`` and never reaches this middleware.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import backends, middleware
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class RemoteUserMiddleware(middleware.RemoteUserMiddleware):
    """Django's, pinned to the WSGI environ key; no header fallback, ever."""

    header = "REMOTE_USER"
    # Without the parameter (nginx misconfigured) the session must not keep a login.
    force_logout_if_no_header = True


class RemoteUserBackend(backends.RemoteUserBackend):
    """Only users created by ``manage.py adduser`` exist; nginx alone cannot make one."""

    create_unknown_user = False


class AccountRequiredMiddleware:
    """In remote_user mode every page needs a known, active user; else a clear 403.

    ``/api/`` is left to the REST framework, which also takes API tokens.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # The REST API authenticates each request itself (an API token or this login)
        # and answers 401/403 as JSON.
        if request.user.is_authenticated or request.path.startswith("/api/"):
            return self.get_response(request)
        name = request.META.get("REMOTE_USER", "")
        if name:
            reason = (
                f"nginx authenticated you as {name!r}, but kvmmgr has no active account of "
                "that name. An admin creates it with: manage.py adduser NAME --role ROLE"
            )
        else:
            reason = (
                "No user name came from the web server. kvmmgr runs in remote_user mode and "
                "must be reached through its nginx site with basic auth."
            )
        return render(request, "403.html", {"exception": reason}, status=403)


class LoginRequiredMiddleware(middleware.LoginRequiredMiddleware):
    """Django's (every page needs a login) except ``/api/``, which the REST framework
    authenticates itself (API tokens too) and answers with 401/403, not a redirect."""

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: tuple[object, ...],
        view_kwargs: dict[str, object],
    ) -> HttpResponse | None:
        if request.path.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
