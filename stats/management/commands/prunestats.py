from __future__ import annotations

from django.core.management.base import BaseCommand

from stats.services.retention import run_retention


class Command(BaseCommand):
    help = (
        "Roll up complete minutes and hours, then delete stats past their retention "
        "(KVMMGR_STATS_RAW_HOURS, _MINUTE_DAYS, _HOUR_DAYS). The beat runs this every minute."
    )

    def handle(self, *args: object, **opts: object) -> None:
        result = run_retention()
        deleted = ", ".join(
            f"{count} {what.replace('_', ' ')}" for what, count in result.deleted.items()
        )
        self.stdout.write(
            f"rolled up {result.minute_rollups} minute and {result.hour_rollups} hour rows; "
            f"deleted {deleted}"
        )
