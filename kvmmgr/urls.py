"""Top-level URLs: one namespace per app.

This is the composition root: it may import every app. A page that belongs to a
higher app but lives under a lower app's path and namespace is joined here.
"""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path

from kvmmgr import views, views_tokens
from kvmmgr.login import GuardedLoginView
from nodes import urls as nodes_urls
from vms.views import evacuate

# The evacuation page plans and starts vms' jobs, but sits with the node pages.
nodes_patterns = [
    *nodes_urls.urlpatterns,
    path("<int:pk>/evacuate/", evacuate.node_evacuate, name="node_evacuate"),
]

urlpatterns = [
    path("login/", GuardedLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("audit/", views.audit_list, name="audit_list"),
    path("account/tokens/", views_tokens.token_list, name="token_list"),
    path("account/tokens/<int:pk>/revoke/", views_tokens.token_revoke, name="token_revoke"),
    path("api/v1/", include(("kvmmgr.api.urls", "api"), namespace="api")),
    path("nodes/", include((nodes_patterns, nodes_urls.app_name))),
    path("vpn/", include("vpn.urls")),
    path("stats/", include("stats.urls")),
    path("", include("jobs.urls")),
    path("", include("vms.urls")),
]
