"""Jobs: the persisted long operations every other app runs through one runner."""

from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # The runner hands queued jobs to the Celery task without importing it.
        from jobs import runner, tasks

        # Late-bound, so a test may patch the task.
        runner.set_dispatch(lambda job_id: tasks.run_job.delay(job_id))  # noqa: PLW0108
