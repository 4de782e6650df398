from __future__ import annotations

from django.apps import AppConfig


class KvmmgrConfig(AppConfig):
    """The project package as an app: roles, the audit log, users and the deploy commands."""

    name = "kvmmgr"
    verbose_name = "kvmmgr access control"
    default_auto_field = "django.db.models.BigAutoField"
