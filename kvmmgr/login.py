"""The login form (``KVMMGR_AUTH=django``), with failed attempts recorded and limited."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse

from kvmmgr import loginguard

HOW = "login form"


def _source(request: HttpRequest) -> str:
    # REMOTE_ADDR is nginx's $remote_addr (a uwsgi param), never a client header.
    return request.META.get("REMOTE_ADDR", "")


class GuardedLoginView(auth_views.LoginView):
    """Django's login view; an address over the failure limit is refused unchecked."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = loginguard.lockout_seconds(_source(request))
        if wait:
            # An unbound form: binding it would check the password.
            form = self.get_form_class()(
                request, initial={"username": str(request.POST.get("username", ""))[:150]}
            )
            minutes = max(1, round(wait / 60))
            message = (
                f"Too many failed logins from this address: try again in about {minutes} "
                f"minute{'s' if minutes != 1 else ''}. Admins see the attempts on the Audit "
                f"page (action {loginguard.FAILED_LOGIN})."
            )
            context = self.get_context_data(form=form, lockout_message=message)
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        loginguard.record_failure(str(form.data.get("username", "")), _source(self.request), HOW)
        return super().form_invalid(form)
