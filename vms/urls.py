from __future__ import annotations

from django.urls import path

from vms import views

app_name = "vms"
urlpatterns = [
    path("", views.vm_list, name="vm_list"),
    path("refresh/", views.refresh_all, name="refresh_all"),
]
