"""What each kind of job is: filled in by the apps that own the kinds.

``jobs`` knows no kind by name. Each app calls :func:`register` from its
``AppConfig.ready()`` with a :class:`JobType`: the handler a worker runs, the label
people read, who may abort it, what the reaper does when its worker died, the extra
actions its page offers, and how its default lock key is made. Apps also declare
which of their exception types are expected failures (their message becomes the
job's error, without a traceback) and hooks to run after the reaper failed a job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from jobs.errors import UnknownJobKind
from kvmmgr.access import Actor, Permission

if TYPE_CHECKING:
    from jobs.context import JobContext
    from jobs.models import Job

Handler = Callable[["JobContext"], None]


class OnStale(StrEnum):
    """What the reaper does with a running job whose heartbeat stopped."""

    FAIL = "fail"  # the job fails; its target's state must be checked
    REQUEUE = "requeue"  # queued again: the handler resumes from the job's record


def _always(job: Job) -> bool:
    return True


@dataclass(frozen=True)
class JobAction:
    """An extra button on a job's page (and the API/CLI), beside Abort.

    ``run(job, actor)`` checks the role itself and raises ``ValidationError`` when
    the job cannot do it now; ``available(job)`` says whether to offer it at all.
    """

    name: str  # the URL's last segment: /jobs/<pk>/<name>/
    label: str
    permission: Permission
    run: str | Callable[[Job, Actor], None]
    available: Callable[[Job], bool] = _always
    hint: str = ""
    done: str = "requested"  # "<done> for job N." after it ran

    def perform(self, job: Job, actor: Actor) -> None:
        run = import_string(self.run) if isinstance(self.run, str) else self.run
        run(job, actor)


@dataclass(frozen=True)
class JobType:
    kind: str
    label: str
    handler: str | Handler  # a callable or its dotted path, imported when a job runs
    abort_permission: Permission = Permission.JOB_ABORT
    on_stale: OnStale = OnStale.FAIL
    stale_hint: str = "the target's state"  # what to check after the worker died
    on_reaped: Callable[[Job], None] | None = None  # after the reaper failed a job
    lock_key: Callable[[Any, str], str] | None = None  # (vm, target_name) -> key
    actions: tuple[JobAction, ...] = ()
    migration_like: bool = False  # shows the migration figures on the job page
    detail_template: str = ""  # included on the job's page, with ``job`` in its context

    def resolve_handler(self) -> Handler:
        return import_string(self.handler) if isinstance(self.handler, str) else self.handler

    def action(self, name: str) -> JobAction | None:
        return next((a for a in self.actions if a.name == name), None)


_types: dict[str, JobType] = {}
_expected: list[type[Exception]] = []
_reap_hooks: list[Callable[[Job], None]] = []


def register(job_type: JobType) -> None:
    """Declare a kind. Registering the same kind twice with a different type is an error."""
    known = _types.get(job_type.kind)
    if known is not None and known != job_type:
        raise ImproperlyConfigured(f"job kind {job_type.kind!r} is registered twice")
    _types[job_type.kind] = job_type


def unregister(kind: str) -> None:
    """For tests that register a kind of their own."""
    _types.pop(kind, None)


def get(kind: str) -> JobType:
    """The type of ``kind``; raises ``UnknownJobKind`` when no app registered it."""
    try:
        return _types[kind]
    except KeyError:
        raise UnknownJobKind(kind) from None


def find(kind: str) -> JobType | None:
    return _types.get(kind)


def types() -> list[JobType]:
    return list(_types.values())


def action_named(name: str) -> JobAction | None:
    """The first registered action called ``name``, whatever its kind."""
    return next((a for t in _types.values() for a in t.actions if a.name == name), None)


def label(kind: str) -> str:
    found = _types.get(kind)
    return found.label if found else kind


def choices() -> list[tuple[str, str]]:
    """(kind, label) of every registered kind, for forms and filters."""
    return [(t.kind, t.label) for t in _types.values()]


def register_expected_failure(*errors: type[Exception]) -> None:
    """Errors whose ``message`` (or ``str``) becomes the job's error, with no traceback."""
    for error in errors:
        if error not in _expected:
            _expected.append(error)


def expected_failures() -> tuple[type[Exception], ...]:
    return tuple(_expected)


def register_reap_hook(hook: Callable[[Job], None]) -> None:
    """Called with each job the reaper failed (e.g. to refresh its node's inventory)."""
    if hook not in _reap_hooks:
        _reap_hooks.append(hook)


def reap_hooks() -> tuple[Callable[[Job], None], ...]:
    return tuple(_reap_hooks)
