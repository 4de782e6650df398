"""``/api/v1/``: the resources, the OpenAPI schema, and the browsable API for logged-in users."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from kvmmgr.api import views_nodes, views_other, views_vms

router = DefaultRouter(trailing_slash=True)
router.register("nodes", views_nodes.NodeViewSet, basename="node")
router.register("vms", views_vms.VMViewSet, basename="vm")
router.register("jobs", views_other.JobViewSet, basename="job")
router.register("vpn/tunnels", views_other.TunnelViewSet, basename="tunnel")
router.register("audit", views_other.AuditViewSet, basename="audit")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("vpn/members/<str:node>/<str:verb>/", views_other.vpn_action, name="vpn-member-action"),
    path("stats/vms/<uuid:uuid>/", views_other.vm_stats, name="vm-stats"),
    path("stats/nodes/<int:pk>/", views_other.node_stats, name="node-stats"),
    path("", include(router.urls)),
]
