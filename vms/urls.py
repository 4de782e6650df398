from __future__ import annotations

from django.urls import path

from vms.views import actions, console, create, detail, listing, migrate

app_name = "vms"
urlpatterns = [
    path("", listing.vm_list, name="vm_list"),
    path("refresh/", listing.refresh_all, name="refresh_all"),
    path("state/", listing.vm_list_state, name="vm_list_state"),
    path("create/", create.vm_create, name="vm_create"),
    path("vm/<uuid:uuid>/", detail.vm_detail, name="vm_detail"),
    path("vm/<uuid:uuid>/start/", actions.vm_start, name="vm_start"),
    path("vm/<uuid:uuid>/shutdown/", actions.vm_shutdown, name="vm_shutdown"),
    path("vm/<uuid:uuid>/reboot/", actions.vm_reboot, name="vm_reboot"),
    path(
        "vm/<uuid:uuid>/force-off/confirm/",
        actions.vm_force_off_confirm,
        name="vm_force_off_confirm",
    ),
    path("vm/<uuid:uuid>/force-off/", actions.vm_force_off, name="vm_force_off"),
    path("vm/<uuid:uuid>/delete/confirm/", actions.vm_delete_confirm, name="vm_delete_confirm"),
    path("vm/<uuid:uuid>/delete/", actions.vm_delete, name="vm_delete"),
    path("vm/<uuid:uuid>/migrate/", migrate.vm_migrate, name="vm_migrate"),
    path("vm/<uuid:uuid>/console/", console.vm_console, name="vm_console"),
    path(
        "vm/<uuid:uuid>/console/ticket/",
        console.vm_console_ticket,
        name="vm_console_ticket",
    ),
    path(
        "vm/<uuid:uuid>/console/native/",
        console.vm_console_native,
        name="vm_console_native",
    ),
]
