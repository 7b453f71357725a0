"""`python -m bench [NAME ...] [--n SIZE] [--sizes A,B,C] [--docs]`: run benchmarks (all by default) one after
the other, the load average allowed to settle before each (common.settle_load).

Writes var/bench/results/<date>.json; a run of every benchmark at its default size (or one given --docs)
also becomes docs/benchmarks.json and docs/benchmarks.md. operator_scale runs its size curve
(operator_scale.CURVE_SIZES) in a full run, or the sizes given with --sizes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from functools import partial
from typing import Any

from bench import common

ORDER = [
    "billing_close",
    "metering_pass",
    "api_throughput",
    "serve_load",
    "launch_latency",
    "burst_admission",
    "cluster_launch",
    "operator_scale",
]


def _curve(module: Any, sizes: list[int], n: int, progress: common.Progress) -> dict[str, Any]:
    return dict(module.run_curve(sizes, progress))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(ORDER)}")
    parser.add_argument("--n", type=int, help="size (only with one benchmark named)")
    parser.add_argument(
        "--sizes",
        type=common.parse_sizes,
        help="operator_scale's size curve, e.g. 1000,5000,20000 (a full run: operator_scale.CURVE_SIZES)",
    )
    parser.add_argument("--docs", action="store_true", help="write docs/benchmarks.{json,md} from this run")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="replace only these benchmarks' entries in docs/benchmarks.{json,md} (each keeps its own date)",
    )
    args = parser.parse_args()
    names = [n for n in args.names if n != "all"] or ORDER
    unknown = set(names) - set(ORDER)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    if args.n is not None and len(names) != 1:
        parser.error("--n needs exactly one benchmark")
    if args.sizes is not None and ("operator_scale" not in names or args.n is not None):
        parser.error("--sizes is operator_scale's size curve (and replaces --n)")
    full = names == ORDER and args.n is None
    common.setup_django()
    from bench import report

    run: dict[str, Any] = {
        "date": common.now_utc().isoformat(timespec="seconds"),
        "machine": common.machine(),
        "benchmarks": {},
    }
    for position, name in enumerate(names, start=1):
        module = importlib.import_module(f"bench.{name}")
        size = args.n if args.n is not None else int(module.DEFAULT_N)
        progress = common.Progress(name)
        progress(f"benchmark {position}/{len(names)}")
        run_one = module.run
        sizes = None
        if name == "operator_scale" and (args.sizes or full):  # the only benchmark with a size curve
            sizes = args.sizes or list(module.CURVE_SIZES)
        if sizes:
            size = max(sizes)
            run_one = partial(_curve, module, sizes)
        result = common.measure(name, run_one, size, progress)
        run["benchmarks"][name] = {**result, "date": run["date"]}
        print(report.one_line(name, result), flush=True)
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    path = common.RESULTS / f"{run['date'].replace(':', '')}.json"
    path.write_text(json.dumps(run, indent=2, default=str) + "\n")
    print(f"[bench] results: {path.relative_to(common.REPO)}", flush=True)
    if args.merge:  # only what succeeded replaces an earlier figure
        succeeded = {name: r for name, r in run["benchmarks"].items() if r["ok"]}
        report.merge_docs({**run, "benchmarks": succeeded}, ORDER)
        print(f"[bench] merged {', '.join(names)} into {report.DOCS_MD.relative_to(common.REPO)}", flush=True)
    elif args.docs or full:
        report.write_docs(run)
        written = [str(p.relative_to(common.REPO)) for p in (report.DOCS_MD, report.DOCS_JSON)]
        print(f"[bench] wrote {' and '.join(written)}", flush=True)
    return 0 if all(r["ok"] for r in run["benchmarks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
