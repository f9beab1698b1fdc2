"""pytest fixtures for testing code that uses scenario_uni1, against the local emulator.

Registered through the `pytest11` entry point, so installing the package is
enough:

    def test_my_pipeline(uni1_emulator):
        client = uni1_emulator.client()
        ...

Fixtures:
  uni1_emulator          a fresh, started Emulator per test (jobs take 0.2 s), stopped after it.
  uni1_emulator_session  one Emulator for the whole session; state is kept between tests.
  uni1_emulator_shared   the session emulator, reset() before the test: cheap and clean.

The marker `@pytest.mark.uni1_emulator(**kwargs)` passes Emulator keywords
(job_duration=0, asset_size_bytes=..., bearer_token=..., ...) to uni1_emulator.

Importing this module costs nothing beyond pytest itself: the emulator (and
asyncio) load only when a fixture is used.
"""

from __future__ import annotations

import pytest

FIXTURE_JOB_DURATION = 0.2


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "uni1_emulator(**kwargs): keyword arguments for the uni1_emulator fixture's Emulator",
    )


@pytest.fixture
def uni1_emulator(request):
    """A started scenario_uni1 emulator, private to this test."""
    from scenario_uni1.emulator import Emulator

    kwargs = {"job_duration": FIXTURE_JOB_DURATION}
    marker = request.node.get_closest_marker("uni1_emulator")
    if marker is not None:
        kwargs.update(marker.kwargs)
    emulator = Emulator(**kwargs)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def uni1_emulator_session():
    """One started emulator for the whole session (state carries over between tests)."""
    from scenario_uni1.emulator import Emulator

    emulator = Emulator(job_duration=FIXTURE_JOB_DURATION)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def uni1_emulator_shared(uni1_emulator_session):
    """The session emulator with a clean slate: reset() (state, faults and knobs) first."""
    uni1_emulator_session.reset()
    return uni1_emulator_session
