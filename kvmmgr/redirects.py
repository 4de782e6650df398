"""Where to go after a POST: a local path the form asked for, never another site."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme


def safe_next(request: HttpRequest, default: str) -> str:
    """The form's ``next`` when it is a path on this site, else ``default``.

    Only absolute paths count ("/vms/…"): a full URL could leave the site (an open
    redirect), and a bare word would be taken for a view name and fail with a 500.
    """
    target = request.POST.get("next", "")
    if (
        target.startswith("/")
        and not target.startswith("//")
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return target
    return default


def back_to(request: HttpRequest, default: str) -> HttpResponseRedirect:
    return HttpResponseRedirect(safe_next(request, default))
