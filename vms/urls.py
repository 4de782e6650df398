from __future__ import annotations

from django.urls import path

from vms import (
    views,
    views_actions,
    views_console,
    views_create,
    views_detail,
    views_migrate,
)

app_name = "vms"
urlpatterns = [
    path("", views.vm_list, name="vm_list"),
    path("refresh/", views.refresh_all, name="refresh_all"),
    path("state/", views.vm_list_state, name="vm_list_state"),
    path("create/", views_create.vm_create, name="vm_create"),
    path("vm/<uuid:uuid>/", views_detail.vm_detail, name="vm_detail"),
    path("vm/<uuid:uuid>/start/", views_actions.vm_start, name="vm_start"),
    path("vm/<uuid:uuid>/shutdown/", views_actions.vm_shutdown, name="vm_shutdown"),
    path("vm/<uuid:uuid>/reboot/", views_actions.vm_reboot, name="vm_reboot"),
    path(
        "vm/<uuid:uuid>/force-off/confirm/",
        views_actions.vm_force_off_confirm,
        name="vm_force_off_confirm",
    ),
    path("vm/<uuid:uuid>/force-off/", views_actions.vm_force_off, name="vm_force_off"),
    path(
        "vm/<uuid:uuid>/delete/confirm/", views_actions.vm_delete_confirm, name="vm_delete_confirm"
    ),
    path("vm/<uuid:uuid>/delete/", views_actions.vm_delete, name="vm_delete"),
    path("vm/<uuid:uuid>/migrate/", views_migrate.vm_migrate, name="vm_migrate"),
    path("vm/<uuid:uuid>/console/", views_console.vm_console, name="vm_console"),
    path(
        "vm/<uuid:uuid>/console/ticket/",
        views_console.vm_console_ticket,
        name="vm_console_ticket",
    ),
    path(
        "vm/<uuid:uuid>/console/native/",
        views_console.vm_console_native,
        name="vm_console_native",
    ),
]
