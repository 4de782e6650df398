"""The audit log page: admins read and filter it; nothing here writes."""

from __future__ import annotations

from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from kvmmgr import audit
from kvmmgr.access import Actor, Permission, require
from kvmmgr.models import AuditEntry, AuditResult

PAGE_SIZE = 100


@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    require(Actor.from_request(request), Permission.AUDIT_VIEW, action="audit.view")
    filters = {key: request.GET.get(key, "").strip() for key in audit.FILTERS}
    try:
        entries = audit.filtered(filters)
        error = ""
    except ValidationError as exc:
        entries, error = AuditEntry.objects.none(), " ".join(exc.messages)
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "filters": filters,
        "results": AuditResult.choices,
        "query": urlencode({key: value for key, value in filters.items() if value}),
        "filter_error": error,
    }
    return render(request, "kvmmgr/audit_list.html", context, status=400 if error else 200)
