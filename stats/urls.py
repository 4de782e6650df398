from __future__ import annotations

from django.urls import path

from stats import views

app_name = "stats"
urlpatterns = [
    path("sparklines.json", views.sparklines, name="sparklines"),
    path("vm/<uuid:uuid>/series.json", views.vm_series, name="vm_series"),
    path("node/<int:pk>/", views.node_stats, name="node_stats"),
    path("node/<int:pk>/series.json", views.node_series, name="node_series"),
]
