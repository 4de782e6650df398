from __future__ import annotations

from django.core.management.base import BaseCommand

from vms.services.reconcile import reconcile_all


class Command(BaseCommand):
    help = (
        "Check failed or abandoned migrations on both nodes now: correct their status "
        "and remove the destination volumes they left (the beat does this every minute)."
    )

    def handle(self, *args: object, **opts: object) -> None:
        results = reconcile_all()
        if not results:
            self.stdout.write("nothing to reconcile")
        for job_id, found in results.items():
            self.stdout.write(f"job {job_id}: {found}")
