"""Top-level URLs: one namespace per app."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path

from kvmmgr import views
from kvmmgr.login import GuardedLoginView

urlpatterns = [
    path("login/", GuardedLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("audit/", views.audit_list, name="audit_list"),
    path("nodes/", include("nodes.urls")),
    path("vpn/", include("vpn.urls")),
    path("stats/", include("stats.urls")),
    path("", include("vms.urls")),
]
