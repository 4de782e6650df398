"""The user's own API tokens: list, create (the key shown once), revoke."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from kvmmgr.access import Actor
from kvmmgr.api import tokens
from kvmmgr.models import ApiToken


@never_cache
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    new_key = ""
    if request.method == "POST":
        raw_days = request.POST.get("expires_days", "").strip()
        try:
            days = int(raw_days) if raw_days else None
        except ValueError:
            days = -1  # refused with the service's message
        try:
            new = tokens.create(
                Actor.from_request(request),
                request.user,
                request.POST.get("name", "").strip(),
                expires_in_days=days,
            )
            new_key = new.key
        except ValidationError as exc:
            for message in exc.messages:
                messages.error(request, message)
    context = {
        "tokens": ApiToken.objects.filter(user=request.user).order_by("-created_at"),
        "new_key": new_key,
    }
    return render(request, "kvmmgr/tokens.html", context)


@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    tokens.revoke(Actor.from_request(request), token)
    messages.success(request, f"Token {token.name} revoked.")
    return redirect("token_list")
