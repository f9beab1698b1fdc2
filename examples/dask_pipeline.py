"""100 prompts through a Dask LocalCluster of worker processes, each paid for once.

    python examples/dask_pipeline.py --offline              # the built-in emulator
    python examples/dask_pipeline.py --base-url http://127.0.0.1:8080/v1   # an emulator
    python examples/dask_pipeline.py --journal postgresql://me@dbhost/renders

Every task runs in a worker process on that process's one client
(scenario_uni1.shared_client: credentials from the worker's environment),
and every worker records in one journal: a task retried after its worker died
re-attaches to the job its first attempt paid for. Run it again: nothing is
paid twice, missing files are fetched. Files and OUT/manifest.jsonl at the end.
Needs `pip install "scenario_uni1[cluster]"` (dask[distributed]).
"""

from __future__ import annotations

import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _pipeline  # noqa: E402 - beside this file


def main() -> int:
    args = _pipeline.parse_args("Dask")
    from dask.distributed import Client, LocalCluster, as_completed

    emulator, env = _pipeline.start_emulator() if args.offline else (None, {})
    base_url = emulator.url if emulator is not None else args.base_url
    _pipeline.pickle_render_by_value()
    started = time.monotonic()
    # env: the workers' environment (the emulator's credentials offline); a
    # worker the nanny starts again after a crash gets it too. Without it,
    # the workers inherit this process's environment.
    with (
        LocalCluster(
            n_workers=args.workers,
            host="127.0.0.1",
            threads_per_worker=8,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            env=env,
        ) as cluster,
        Client(cluster) as dask,
    ):
        futures = dask.map(
            _pipeline.render,
            range(args.prompts),
            _pipeline.prompts(args.prompts),
            base_url=base_url,
            journal=args.journal,
            out=args.out,
        )
        results = []
        for future in as_completed(futures):
            results.append(future.result())
            print(f"\r{len(results)}/{args.prompts} done", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    manifest = _pipeline.write_manifest(args.out, results)
    print(_pipeline.summary("Dask", results, started, manifest))
    if emulator is not None:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
