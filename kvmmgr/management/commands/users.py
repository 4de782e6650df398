from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from kvmmgr import htpasswd
from kvmmgr.access import Actor


class Command(BaseCommand):
    help = "List kvmmgr users: role, active, and whether nginx's htpasswd has them."

    def handle(self, *args: object, **opts: object) -> None:
        in_file = htpasswd.read(settings.KVMMGR_HTPASSWD)
        for user in get_user_model().objects.order_by("username"):
            actor = Actor.for_user(user)
            state = "active" if user.is_active else "inactive"
            web = "htpasswd" if user.username in in_file else "no htpasswd line"
            self.stdout.write(f"{user.username}\t{actor.role}\t{state}\t{web}")
