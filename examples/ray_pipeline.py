"""100 prompts through local Ray, each paid for once.

    python examples/ray_pipeline.py --offline              # the built-in emulator
    python examples/ray_pipeline.py --base-url http://127.0.0.1:8080/v1   # an emulator
    python examples/ray_pipeline.py --journal postgresql://me@dbhost/renders

Each task runs in a Ray worker process on that process's one client
(scenario_uni1.shared_client: credentials from the worker's environment,
which local Ray inherits from this process), and every worker records in one
journal: a task Ray retries after its worker died re-attaches to the job its
first attempt paid for. Run it again: nothing is paid twice, missing files
are fetched. Files and OUT/manifest.jsonl at the end.
Needs `pip install "scenario_uni1[cluster]"` (ray).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _pipeline  # noqa: E402 - beside this file


def main() -> int:
    args = _pipeline.parse_args("Ray")
    import ray

    emulator, env = _pipeline.start_emulator() if args.offline else (None, {})
    base_url = emulator.url if emulator is not None else args.base_url
    # Local Ray's workers inherit this environment: the credentials reach them
    # without passing through Ray (a runtime_env would store them in its GCS).
    os.environ.update(env)
    _pipeline.pickle_render_by_value()
    started = time.monotonic()
    ray.init(
        num_cpus=args.workers,
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        # Half a CPU each: two tasks share a worker slot's time while they
        # wait on the network; max_retries: a task whose worker died runs again.
        render = ray.remote(num_cpus=0.5, max_retries=3)(_pipeline.render)
        pending = [
            render.remote(i, prompt, base_url, args.journal, args.out)
            for i, prompt in enumerate(_pipeline.prompts(args.prompts))
        ]
        results = []
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            results.extend(ray.get(ready))
            print(f"\r{len(results)}/{args.prompts} done", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    finally:
        ray.shutdown()
    manifest = _pipeline.write_manifest(args.out, results)
    print(_pipeline.summary("Ray", results, started, manifest))
    if emulator is not None:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
