"""Checking a job where it is typed (issue #15): the wizard, the job editor and ``plugback job add``.

One rule per field, the config's own (``core.agent.config``), with messages about
the input, not about the settings file, and always before anything is written:
the window asks the agent (``validate_job``) before it prepares a drive; the CLI
checks before it asks for a passphrase or touches config.json.
"""

from __future__ import annotations

from core.agent.config import Config, Destination, Job, job_name_problem
from core.errors import ConfigError, UsageError


def check_name(config: Config | None, name, original: str | None = None) -> str:
    """``name`` if it may name a job (the rule, and no other job has it); UsageError saying why not.

    Without a config only the rule is checked."""
    problem = job_name_problem(name)
    if problem:
        raise UsageError(problem, field="name")
    if config is None:
        return name
    # Saving a stand-in into a copy runs the config's own clash rule (renaming a job to itself is fine).
    config.copy().save_job(Job(name=name, sources=["/"], destination=Destination(path="/")), original)
    return name


def check_job(config: Config, data, original: str | None = None, *, window: bool = True) -> Job:
    """A whole job from the window (``Job.to_window`` shape) or the CLI (``window=False``), checked.

    A bad field raises ConfigError naming the field, with a message about this job
    (not "the settings file has a problem").
    """
    check_name(None, data.get("name") if isinstance(data, dict) else None)   # the name first; clashes last
    try:
        job = Job.from_window(data, "job") if window else Job.from_dict(data, "job")
    except ConfigError as err:
        field = err.details.get("field", "job")
        raise ConfigError(f"This job cannot be saved: '{field}' {err.details.get('reason', 'is not valid')}.",
                          field=err.details.get("field"), reason=err.details.get("reason")) from None
    config.copy().save_job(job, original)
    return job
