"""Celery tasks run inline, for tests that have no worker and no broker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def eager_tasks() -> Iterator[None]:
    """Tasks queued meanwhile (jobs, node refreshes) run at once in this process.

    On a transactional test a job submitted inside runs at submit time, as a
    worker would run it.
    """
    from kvmmgr.celery import app

    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False
