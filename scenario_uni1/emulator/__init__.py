"""A faithful local emulator of Scenario's REST API for Luma Uni-1 Max.

    from scenario_uni1.emulator import Emulator

    with Emulator(job_duration=0.5) as emu:
        client = emu.client()            # scenario_uni1.Client aimed at emu.url
        emu.inject(path=r"^/v1/jobs/", status=503, times=2)
        ...
        assert emu.request_count("POST", r"^/v1/generate/") == 1

It serves two loopback origins, as the real service does: the API (`emu.url`,
base path /v1, Basic or Bearer auth) and a CDN (`emu.cdn_url`) that serves signed,
expiring URLs and never needs credentials. Everything follows
shared/scenario-api.md; where that contract says "unknown", the variant it names
is the one emulated. Choices of our own are listed in EMULATOR_CHOICES (server.py).

Jobs do not run anywhere: a job's status, progress and history are computed from
the clock each time it is read, so ten thousand jobs cost nothing while they wait.
The HTTP server is a small asyncio implementation (http.py) running on its
own event loop in a background thread, fast enough that benchmarks measure
the client and not the emulator.

Run it alone with `python -m scenario_uni1.emulator --port 8080` (or
`scenario-uni1 emulator --port 8080`); it prints the URL and the credentials and
can be steered over HTTP under /_emulator/ (see `Emulator._admin`).

Inside, data flows one way, each module importing only those below it::

    command -> server (Emulator: lifecycle, origins, knobs, admin)
            -> routes (API: auth, generate, jobs, assets)
               | chaos (random faults on every route) -> faults (inject, outcomes)
            -> uploads (multipart flow) -> cdn (signed URLs, downloads, part PUTs)
            -> state (records, ids, clock) -> wire (constants, JSON answers)
            -> http (the asyncio HTTP/1.1 server), images (generated and sniffed images)

The route modules are layers of the one Emulator class (each a base class of the
next), so a request is handled without a hop between objects.
"""

from .chaos import Chaos
from .command import main, serve
from .faults import Fault
from .server import EMULATOR_CHOICES as EMULATOR_CHOICES
from .server import KNOBS as KNOBS
from .server import Emulator
from .state import RecordedRequest
from .wire import GENERATE_PATH as GENERATE_PATH
from .wire import MODEL_ID

__all__ = ["MODEL_ID", "Chaos", "Emulator", "Fault", "RecordedRequest", "main", "serve"]
