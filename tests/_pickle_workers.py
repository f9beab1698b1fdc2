"""Functions the process-pool tests of test_pickling.py run in child processes.

A module of their own, so that a spawned child imports only this (and
scenario_uni1 when it unpickles a job), not the test module and pytest.
"""

from __future__ import annotations

import os


def warm_up(_: object = None) -> int:
    return os.getpid()


def describe(job):
    """Unpickling happened before this runs: no request, no credentials needed."""
    return job.id, job.status, job.cost, type(job).__module__ + "." + type(job).__qualname__


def refresh(job):
    """The first request binds the job to a client (ConfigurationError without credentials)."""
    return job.refresh().status


def refresh_with_project(job):
    job.refresh()
    return job.client.base_url, job.client.project_id


def describe_error(exc):
    return type(exc).__name__, exc.job.id, exc.job.status, exc.error, exc.hint


def environment_has_credentials() -> bool:
    return any(name.startswith("SCENARIO_SDK_") for name in os.environ)
