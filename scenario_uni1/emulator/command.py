"""The command: `python -m scenario_uni1.emulator` and `scenario-uni1 emulator`."""

from __future__ import annotations

import threading

from .server import Emulator


def serve(
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    cdn_port: int = 0,
    job_duration: float = 2.0,
    api_key: str = "emu-key",
    api_secret: str = "emu-secret",
    bearer_token: str | None = None,
    seed: int | None = None,
    url_ttl: float = 86400,
    outputs_per_job: int = 1,
    image_long_side: int = 256,
    asset_size_bytes: int | None = None,
    max_recorded_requests: int | None = 10000,
    max_jobs_in_flight: int | None = None,
    chaos: float | None = None,
    chaos_seed: int | None = None,
    ssl_context=None,
    out=None,
) -> None:
    """Run an emulator in the foreground until SIGINT or SIGTERM.

    Prints the base URL and the credentials as KEY=value lines to stdout (or
    `out`), flushed, so a parent process can read them; port=0 picks a free port.
    chaos: the share of requests faulted at random (Emulator.chaos), with
    chaos_seed (None: drawn, and printed so that a run can be repeated).
    """
    import signal
    import sys

    out = out or sys.stdout
    emu = Emulator(
        host=host,
        port=port,
        cdn_port=cdn_port,
        api_key=api_key,
        api_secret=api_secret,
        bearer_token=bearer_token,
        job_duration=job_duration,
        url_ttl=url_ttl,
        seed=seed,
        outputs_per_job=outputs_per_job,
        image_long_side=image_long_side,
        asset_size_bytes=asset_size_bytes,
        max_recorded_requests=max_recorded_requests,
        max_jobs_in_flight=max_jobs_in_flight,
        ssl_context=ssl_context,
    )
    in_force = emu.chaos(chaos, seed=chaos_seed) if chaos else None
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    emu.start()
    try:
        lines = [
            "Scenario API emulator running; Ctrl-C to stop.",
            f"SCENARIO_BASE_URL={emu.url}",
            f"SCENARIO_SDK_API_KEY={emu.api_key}",
            f"SCENARIO_SDK_API_SECRET={emu.api_secret}",
        ]
        if bearer_token:
            lines.append(f"SCENARIO_SDK_JWT={bearer_token}")
        if in_force is not None:
            lines.append(f"SCENARIO_EMULATOR_CHAOS={in_force.rate} seed={in_force.seed}")
        lines += [
            f"SCENARIO_EMULATOR_CDN={emu.cdn_url}",
            f"SCENARIO_EMULATOR_ADMIN={emu.admin_url}/",
        ]
        print("\n".join(lines), file=out, flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m scenario_uni1.emulator",
        description="Run a local emulator of the Scenario API (Luma Uni-1 Max).",
    )
    p.add_argument("--port", type=int, default=0, help="API port (0: a free one)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--cdn-port", type=int, default=0)
    p.add_argument("--job-duration", type=float, default=2.0, help="seconds per job")
    p.add_argument("--api-key", default="emu-key")
    p.add_argument("--api-secret", default="emu-secret")
    p.add_argument("--bearer-token", default=None)
    p.add_argument(
        "--seed", type=int, default=None, help="reproducible ids and images (default: random)"
    )
    p.add_argument("--url-ttl", type=float, default=86400)
    p.add_argument("--outputs-per-job", type=int, default=1)
    p.add_argument("--image-long-side", type=int, default=256)
    p.add_argument("--asset-size-bytes", type=int, default=None)
    p.add_argument("--max-recorded-requests", type=int, default=10000)
    p.add_argument(
        "--max-in-flight",
        "--max-jobs-in-flight",
        dest="max_jobs_in_flight",
        type=int,
        default=None,
        help="with N jobs not yet terminal, POST /generate answers 429 (default: no ceiling)",
    )
    p.add_argument(
        "--chaos",
        type=float,
        default=None,
        metavar="RATE",
        help="fault this share of all requests at random, every route and kind (e.g. 0.05)",
    )
    p.add_argument("--chaos-seed", type=int, default=None, help="the chaos draw's seed")
    a = p.parse_args(argv)
    serve(
        a.port,
        a.host,
        cdn_port=a.cdn_port,
        job_duration=a.job_duration,
        api_key=a.api_key,
        api_secret=a.api_secret,
        bearer_token=a.bearer_token,
        seed=a.seed,
        url_ttl=a.url_ttl,
        outputs_per_job=a.outputs_per_job,
        image_long_side=a.image_long_side,
        asset_size_bytes=a.asset_size_bytes,
        max_recorded_requests=a.max_recorded_requests,
        max_jobs_in_flight=a.max_jobs_in_flight,
        chaos=a.chaos,
        chaos_seed=a.chaos_seed,
    )
    return 0
