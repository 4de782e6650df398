"""The node pages. The evacuation page (nodes:node_evacuate) is vms' own and joins this
namespace in kvmmgr/urls.py: nodes cannot import the apps above it."""

from __future__ import annotations

from django.urls import path

from nodes import views

app_name = "nodes"
urlpatterns = [
    path("", views.node_list, name="node_list"),
    path("add/", views.node_add, name="node_add"),
    path("<int:pk>/edit/", views.node_edit, name="node_edit"),
    path("<int:pk>/delete/", views.node_delete, name="node_delete"),
    path("<int:pk>/refresh/", views.node_refresh, name="node_refresh"),
    path("<int:pk>/trust/", views.node_trust, name="node_trust"),
    path("<int:pk>/maintenance/", views.node_maintenance, name="node_maintenance"),
]
