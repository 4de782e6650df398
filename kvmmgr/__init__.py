"""kvmmgr: a web manager for KVM hosts with live migration across subnets."""

from __future__ import annotations

from kvmmgr.celery import app as celery_app

__all__ = ["celery_app"]
