"""docs/benchmarks.md from a run's JSON: the machine, then one table row per figure with its baseline and
ratio, then the goals and whether they were met."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bench.common import REPO

DOCS_JSON = REPO / "docs" / "benchmarks.json"
DOCS_MD = REPO / "docs" / "benchmarks.md"

Row = tuple[str, Any, Any, Any]  # figure, ours, baseline, ratio


def one_line(name: str, result: dict[str, Any]) -> str:
    if not result.get("ok"):
        return f"{name}: FAILED ({result.get('error')})"
    goals = result["figures"].get("goals") or {}
    met = sum(1 for v in goals.values() if v)
    shown = {k: v for k, v in result["figures"].items() if k in ("ratio", "ours", "baseline")}
    figures = json.dumps(shown, default=str)
    return f"{name}: done in {result['seconds']} s; goals met {met}/{len(goals)}; {figures}"


def _x(value: Any) -> str:
    return f"{value}x" if value not in (None, "") else ""


def _launch(f: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [
        (
            f"{p} launch to running (ms)",
            f["ours"][f"{p}_ms"],
            f["baseline"][f"{p}_ms"],
            _x(f["ratio"][f"{p}_ms"]),
        )
        for p in ("p50", "p95", "p99")
    ]
    if "p50_extra_ms" in f:
        rows.append(("p50 difference (ms)", f["p50_extra_ms"], "", ""))
    rows.append(("p99 difference (ms)", f["p99_extra_ms"], "", ""))
    if "warmup_launches" in f:
        rows.append(
            ("untimed warm-up launches (every web worker and Celery child)", f["warmup_launches"], "", "")
        )
    if "client_mode" in f:
        rows.append(("client: wait endpoint or polling", f["client_mode"], "watch", ""))
    if "scheduler_client" in f:
        qps = f["scheduler_client"]
        rows.append(
            ("kube-scheduler client QPS / burst (both sides)", f"{qps['qps']} / {qps['burst']}", "", "")
        )
    server = f["ours_server_side"]
    rows.append(
        (
            "server side only, row created to running recorded, p50 / p99 (ms)",
            f"{server['p50_ms']} / {server['p99_ms']}",
            "",
            "",
        )
    )
    if "api_request_floor" in f:
        floor = f["api_request_floor"]
        rows.append(
            (
                "floor: one authenticated GET /api/v1/me, p50 / p99 (ms)",
                f"{floor['p50_ms']} / {floor['p99_ms']}",
                "",
                "",
            )
        )
    for stage, values in (f.get("stages") or {}).items():
        rows.append((f"stage: {stage}, p50 / p99 (ms)", f"{values['p50_ms']} / {values['p99_ms']}", "", ""))
    if "cpu" in f:
        ours, raw = f["cpu"]["ours"], f["cpu"]["baseline"]
        rows.append(
            (
                "CPU per launch, with its teardown (ms, all processes)",
                round(1000 * ours["cpu_seconds_total"] / f["n"], 1),
                round(1000 * raw["cpu_seconds_total"] / f["n"], 1),
                _x(round(ours["cpu_seconds_total"] / max(raw["cpu_seconds_total"], 0.01), 2)),
            )
        )
        rows.append(("CPU per launch by part (ms)", _parts(ours), _parts(raw), ""))
    return rows


def _parts(spent: dict[str, Any]) -> str:
    """The parts' CPU per unit of work, largest first."""
    per = sorted(spent["cpu_ms_per_unit"].items(), key=lambda item: -item[1])
    return ", ".join(f"{name} {ms}" for name, ms in per if ms >= 0.5)


def _burst(f: dict[str, Any]) -> list[Row]:
    return [
        (
            f"{f['launches']} launches, {f['tenants']} tenants, {f['clients']} clients: "
            "all admitted running (s)",
            f["ours_seconds"],
            f["baseline_seconds"],
            _x(f["ratio"]),
        ),
        ("pods (admitted launches / direct creations)", f["admitted"], f["baseline_pods"], ""),
        ("all launch requests answered (s)", f["ours_admission_seconds"], "", ""),
        ("launch requests answered a second", f.get("admissions_per_second", ""), "", ""),
        ("responses", ", ".join(f"{k}: {v}" for k, v in sorted(f["responses"].items())), "", ""),
        ("quota overruns (from the database)", f["quota_overruns"], "", ""),
        (
            "small-quota tenants: admitted / their limits allow",
            f"{f['small_tenants_admitted']} / {f['small_tenants_limit']}",
            "",
            "",
        ),
        *_burst_cpu(f),
    ]


def _burst_cpu(f: dict[str, Any]) -> list[Row]:
    if "cpu" not in f:
        return []
    cpu, floor = f["cpu"], f["cpu_floor"]
    admission, running, raw = cpu["ours_admission"], cpu["ours_until_running"], cpu["baseline"]
    return [
        (
            "CPU until all run (s, all processes) / cores busy",
            f"{running['cpu_seconds_total']} / {running['cores_busy']}",
            f"{raw['cpu_seconds_total']} / {raw['cores_busy']}",
            _x(round(running["cpu_seconds_total"] / max(raw["cpu_seconds_total"], 0.01), 2)),
        ),
        ("CPU per pod by part (ms)", _parts(running), _parts(raw), ""),
        (
            "while answering: CPU per launch request by part (ms) / cores busy",
            f"{_parts(admission)} / {admission['cores_busy']}",
            "",
            "",
        ),
        (
            "CPU floor: answers a second at most / seconds until all run at least",
            f"{floor['answers_per_second_at_most']} / {floor['ours_seconds_at_least']}",
            floor["baseline_seconds_at_least"],
            "",
        ),
    ]


def _clusters(f: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for size, c in f["launch"].items():
        o, b = c["ours"], c["baseline"]
        rows.append(
            (
                f"{size}-node cluster, POST to every node running, p50 / mean (ms), {c['rounds']} rounds",
                f"{o['p50_ms']} / {o['mean_ms']}",
                f"{b['p50_ms']} / {b['mean_ms']}",
                _x(c["ratio"]["p50_ms"]),
            )
        )
        rows.append(
            (
                f"{size} nodes: difference, p50 / mean (ms)",
                f"{c['p50_extra_ms']} / {c['mean_extra_ms']}",
                "",
                "",
            )
        )
        for stage, values in c.get("stages", {}).items():
            rows.append((f"{size} nodes, stage: {stage}, p50 (ms)", values["p50_ms"], "", ""))
        ours, raw = _stack_cpu(c["cpu"]["ours"]), _stack_cpu(c["cpu"]["baseline"])
        rows.append(
            (
                f"{size} nodes: CPU per cluster with its teardown (s; stack and cluster, not other work)",
                round(ours / max(c["rounds"], 1), 2),
                round(raw / max(c["rounds"], 1), 2),
                _x(round(ours / max(raw, 0.01), 2)),
            )
        )
    rows += [
        ("client", f["client_mode"], "a pod watch", ""),
        ("baseline's work", f["baseline_work"], "", ""),
    ]
    burst = f.get("burst")
    if burst:
        cl, single, raw_b = burst["clusters"], burst["single_launches"], burst["baseline"]
        n, nodes = cl["requests"], burst["nodes_per_cluster"]
        rows += [
            (
                f"burst: {n} {nodes}-node clusters from {burst['clients']} clients, "
                f"{burst['tenants']} tenants: answered a second",
                cl["answers_per_second"],
                f"{single['answers_per_second']} ({n} single launches of the type)",
                _x(burst["ratio_answers_vs_single"]),
            ),
            ("burst: all requests answered (s)", cl["answered_seconds"], single["answered_seconds"], ""),
            ("burst: responses", _codes(cl["responses"]), _codes(single["responses"]), ""),
            (
                f"burst: all {cl['pods']} pods running (s)",
                cl["all_running_seconds"],
                f"{raw_b['all_running_seconds']} (the same {raw_b['gangs']} gangs created directly)",
                _x(burst["ratio_all_running"]),
            ),
            (
                "burst, while answering: CPU per request by part (ms) / cores busy",
                f"{_parts(cl['cpu']['answering'])} / {cl['cpu']['answering']['cores_busy']}",
                f"{_parts(single['cpu']['answering'])} / {single['cpu']['answering']['cores_busy']}",
                "",
            ),
            (
                "burst: CPU per pod until all run (ms; stack and cluster, not other work)",
                round(1000 * _stack_cpu(cl["cpu"]["until_running"]) / max(cl["pods"], 1), 1),
                round(1000 * _stack_cpu(raw_b["cpu"]) / max(raw_b["pods"], 1), 1),
                _x(
                    _per_ratio(
                        _stack_cpu(cl["cpu"]["until_running"]) / max(cl["pods"], 1),
                        _stack_cpu(raw_b["cpu"]) / max(raw_b["pods"], 1),
                    )
                ),
            ),
            (
                "burst: CPU floor (stack and cluster): cluster requests answered a second at most",
                burst["cpu_floor_answers_per_second"],
                "",
                "",
            ),
        ]
    return rows


def _stack_cpu(spent: dict[str, Any]) -> float:
    """CPU seconds less bench/cpu.py's "other" (processes outside the stack and the cluster)."""
    return sum(seconds for part, seconds in spent["cpu_seconds"].items() if part != "other")


def _per_ratio(ours: float, baseline: float) -> Any:
    return round(ours / baseline, 2) if baseline else ""


def _api(f: dict[str, Any]) -> list[Row]:
    if "list_deep" not in f:
        return _api_before_cursors(f)
    q, r, deep, me = f["queries"], f["ratio"], f["deep_page"], f["me"]
    rows: list[Row] = []
    for name, figure in (
        ("list", f"list, first page (50 rows): requests/s at concurrency {f['concurrency']}"),
        (
            "list_deep",
            f"list, deep page {deep['page']:,} by cursor (after {deep['rows_before']:,} rows): requests/s",
        ),
        ("detail", "detail: requests/s"),
        ("list_offset_deep", "list, the same deep page by offset (informational): requests/s"),
    ):
        rows.append((figure, f[name]["rps"], f"{me['rps']} (/me)", _x(r[f"{name}_rps_vs_me"])))
        rows.append(
            (
                f"{figure.split(':')[0]}: p99 (ms)",
                f[name]["p99_ms"],
                f"{me['p99_ms']} (/me)",
                _x(r[f"{name}_p99_ms_vs_me"]),
            )
        )
    rows += [
        ("queries per request: list first page / deep page / detail",
         f"{q['list_n_limit50']} / {q['list_deep_limit50']} / {q['detail']}", f"{q['me']} (/me)", ""),
        (f"list queries: {f['tenant_instances']:,} vs 1,000 instances; 200 vs 50 a page (first / deep page)",
         f"{q['list_n_limit50']} vs {q['list_1k_limit50']}; {q['list_n_limit200']} vs "
         f"{q['list_n_limit50']} / {q['list_deep_limit200']} vs {q['list_deep_limit50']}", "", ""),
        ("list count: shown / exact (capped when false)", f"{deep['count']:,} / {deep['count_exact']}",
         f"{f['tenant_instances']:,} rows", ""),
        ("instances in the database", f["instances_total"], "", ""),
    ]  # fmt: skip
    return rows


def _api_before_cursors(f: dict[str, Any]) -> list[Row]:
    """A result from before the deep page was measured (docs/benchmarks.json of earlier runs)."""
    q, r, n = f["queries"], f["ratio"], f["queries"]["list_5k_limit50"]
    return [
        (f"list (50 a page), requests/s at concurrency {f['concurrency']}", f["list"]["rps"],
         f"{f['me']['rps']} (/me)", _x(r["list_rps_vs_me"])),
        ("detail, requests/s", f["detail"]["rps"], f"{f['me']['rps']} (/me)", _x(r["detail_rps_vs_me"])),
        ("list p99 (ms)", f["list"]["p99_ms"], f"{f['me']['p99_ms']} (/me)", _x(r["list_p99_vs_me"])),
        ("detail p99 (ms)", f["detail"]["p99_ms"], f"{f['me']['p99_ms']} (/me)", _x(r["detail_p99_vs_me"])),
        ("queries per request: list / detail", f"{n} / {q['detail']}", f"{q['me']} (/me)", ""),
        (f"list queries: {f['tenant_instances']} vs 1,000 instances; 200 vs 50 a page",
         f"{n} vs {q['list_1k_limit50']}; {q['list_5k_limit200']} vs {n}",
         "", ""),
        ("instances in the database", f["instances_total"], "", ""),
    ]  # fmt: skip


def _scale(f: dict[str, Any]) -> list[Row]:
    lag, mem, r = f["watch_to_db_lag"], f["operator_rss_mib"], f["ratio"]
    lists = "one LIST of each kind it reads" if "bare_lists" in f else "bare LIST of the pods"
    rows: list[Row] = [
        (
            f"full resync of {f['pods']} running instances on {f['nodes']} nodes (s)",
            f["full_resync_seconds"],
            f"{f['bare_list_seconds']} ({lists})",
            _x(r["resync_vs_bare_list"]),
        ),
    ]
    if "first_resync_seconds" in f:
        rows.append(("the same process's first resync (s)", f["first_resync_seconds"], "", ""))
    split = f.get("resync_split")
    if split:
        rows.append(
            (
                "resync split: our code / Kubernetes requests / database queries (s)",
                f"{split['ours_seconds']} / {split['kube_seconds']} ({split['kube_requests']}) / "
                f"{split['db_seconds']} ({split['db_queries']})",
                "",
                "",
            )
        )
        for statement, count in (split.get("db_top") or {}).items():
            rows.append((f"resync query x{count}", f"`{statement.replace('|', '/')}`", "", ""))
    raw = f.get("raw_cold_start")
    rows.append(
        (
            "cold start: fresh operator to all running, creating every pod (s)",
            f["cold_start_seconds"],
            f"{raw['seconds']} (raw Secret + Service + pod, {f['create_concurrency']} at once)"
            if raw
            else "",
            _x(r.get("cold_start_vs_raw")) if raw else "",
        )
    )
    if "operator_startup_seconds" in f:
        rows.append(
            (
                "cold start less the operator's startup (idle operator, start to leading) (s)",
                round(f["cold_start_seconds"] - f["operator_startup_seconds"], 1),
                raw["seconds"] if raw else "",
                _x(r.get("cold_start_less_startup_vs_raw")),
            )
        )
    negative = f", {lag['negative']} negative (min {lag['min_ms']})" if "negative" in lag else ""
    rows += [
        (
            "watch-to-database lag p50 / p99 (ms)",
            f"{lag['p50_ms']} / {lag['p99_ms']}{negative}",
            "0 (our own watch)",
            "",
        ),
        (
            "operator memory, resident (MiB): steady / peak",
            f"{mem['steady']} / {mem['peak']}",
            f"{mem['idle']} (idle)",
            _x(r["steady_rss_vs_idle"]),
        ),
    ]
    return rows


CURVE_COLUMNS = (
    ("pods", "Pods"),
    ("nodes", "Nodes"),
    ("resync_seconds", "Resync (s)"),
    ("bare_list_seconds", "One LIST each (s)"),
    ("resync_ours_seconds", "Resync: our code (s)"),
    ("resync_kube_seconds", "Resync: apiserver requests (s)"),
    ("resync_db_seconds", "Resync: database (s)"),
    ("cold_start_seconds", "Cold start (s)"),
    ("raw_cold_start_seconds", "Raw creation (s)"),
    ("lag_p99_ms", "Lag p99 (ms)"),
    ("rss_steady_mib", "Memory (MiB)"),
)


def curve_table(f: dict[str, Any]) -> list[str]:
    """operator_scale's size curve: one row a size, then how each cost grew against the size (1.0: linear)."""
    points = f.get("curve") or []
    if not points:
        return []
    out = [
        "",
        "## Operator scale: size curve",
        "",
        "Each row is a dedicated cluster of that many pods (nodes a tenth). Our code is the resync's wall",
        "time less the time in Kubernetes requests and database queries (both summed over threads).",
        "",
        "| " + " | ".join(title for _, title in CURVE_COLUMNS) + " |",
        "|" + "---|" * len(CURVE_COLUMNS),
    ]
    for point in points:
        out.append("| " + " | ".join(_cell(point.get(key)) for key, _ in CURVE_COLUMNS) + " |")
    growth = f.get("curve_growth") or {}
    if growth:
        first, last = points[0]["pods"], points[-1]["pods"]
        out += [
            "",
            f"Growth from {first} to {last} pods over the size's growth ({last / first:g}x), 1.0 linear: "
            + ", ".join(
                f"{key.removesuffix('_seconds').replace('_', ' ')} {_cell(v)}" for key, v in growth.items()
            ),
        ]
    return out


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _billing(f: dict[str, Any]) -> list[Row]:
    titles = {
        "main": "the month before closed",
        "history": "after 12 closed months",
        "size": "5x the tenants and rows",
        "fleet": "a month of {instances:,} instances",
    }
    rows: list[Row] = []
    for name, title in titles.items():
        point = f.get(name)
        if not point:
            continue
        rows.append(
            (
                f"close {point['month']}, {title.format(**point)}: {point['invoices']:,} invoices, "
                f"{point['month_rows']:,} rows in the month, {point['ledger_rows']:,} in the ledger (s)",
                point["ours_seconds"],
                f"{point['baseline_seconds']} (bare GROUP BY)",
                _x(point["ratio"]),
            )
        )
    if "main" in f:
        main = f["main"]
        rows.append(("per tenant (ms), main", main["ours_ms_per_tenant"], "", ""))
        rows.append(
            (
                "main: adjustment lines (late rows); wallets from the whole history; invoice_finalized "
                "batches; their receivers (s, apart)",
                f"{main['adjustment_lines']}; {main['wallets_from_history']}; {main['signal_batches']}; "
                f"{main['receivers_seconds']}",
                "",
                "",
            )
        )
    if "history" in f and "main" in f:
        history, main_s = f["history"]["ours_seconds"], f["main"]["ours_seconds"]
        rows.append(("close after 12 months / after 1", history, main_s, _x(f["history"].get("vs_main"))))
        bare_history, bare_main = f["history"]["baseline_seconds"], f["main"]["baseline_seconds"]
        rows.append(
            (
                "the bare GROUP BY of the same month after 12 months / after 1 (the floor's own growth)",
                bare_history,
                bare_main,
                _x(round(bare_history / bare_main, 2) if bare_main else None),
            )
        )
    if "size" in f:
        rows.append(("seconds per row, 5x size / main", "", "", _x(f["size"].get("growth"))))
    return rows


def _metering(f: dict[str, Any]) -> list[Row]:
    month = f["simulated_month"]
    return [
        (
            f"one pass: {f['instances']} running instances {f['days']} days old, {f['ledger_rows']:,} ledger"
            f" rows, {f['rows_written']} new (s, median of {len(f['ours_runs_seconds'])})",
            f["ours_seconds"],
            f"{f['baseline_seconds']} (bare SQL: the same ledger ends, the same rows)",
            _x(f["ratio"]),
        ),
        (f"queries per pass (chunks of {f['chunk']})", f["queries_per_pass"], 1, ""),
        (
            "where the committed pass went (s), by statement / the bare SQL's EXPLAIN ANALYZE",
            ", ".join(f"{k} {v}" for k, v in (f.get("ours_split_seconds") or {}).items()),
            _bare_plan(f.get("baseline_plan") or {}),
            "",
        ),
        (
            "the same pass one instance at a time (meter_instance each; informational)",
            f["one_at_a_time_seconds"],
            f["ours_seconds"],
            _x(f["one_at_a_time_ratio"]),
        ),
        (
            f"rows per always-on instance-month ({month['month']}, {month['days']} days, a pass every"
            f" {month['pass_every_seconds']} s)",
            month["rows_per_instance_month"],
            f"{month['rows_per_instance_month_60s_windows']:,} (60 s windows)",
            _x(round(month["rows_per_instance_month"] / month["rows_per_instance_month_60s_windows"], 3)),
        ),
    ]


def _bare_plan(plan: dict[str, Any]) -> str:
    if not plan:
        return ""
    return f"{plan['execution_ms']} ms, of which JIT {plan['jit_ms']} (jit {plan['jit']})"


def _serve(f: dict[str, Any]) -> list[Row]:
    ours, base, r = f["ours"], f["baseline"], f["ratio"]
    failures = {**ours["connection_failures"], **base["connection_failures"]}
    return [
        (
            f"{f['clients']} clients for {f['seconds']:.0f} s, list/detail/launch/stop: requests a second",
            ours["rps"],
            f"{base['rps']} (GET /api/v1/me)",
            _x(r["rps"]),
        ),
        ("p50 / p99 / max (ms)", f"{ours['p50_ms']} / {ours['p99_ms']} / {ours['max_ms']}",
         f"{base['p50_ms']} / {base['p99_ms']} / {base['max_ms']}", _x(r["p99_ms"])),
        ("answers by status", _codes(ours["status"]), _codes(base["status"]), ""),
        ("5xx; connections reset, refused or timed out", f"{ours['5xx']}; {sum(failures.values())}",
         f"{base['5xx']}", ""),
    ]  # fmt: skip


def _codes(status: dict[str, int]) -> str:
    return ", ".join(f"{code}: {n}" for code, n in status.items())


SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any]], list[Row]]]] = {
    "launch_latency": ("Launch latency (API to running vs direct pod creation)", _launch),
    "burst_admission": ("Burst admission", _burst),
    "api_throughput": ("API throughput", _api),
    "cluster_launch": ("Clusters", _clusters),
    "operator_scale": ("Operator scale (dedicated cluster)", _scale),
    "billing_close": ("Billing month close", _billing),
    "metering_pass": ("Metering pass", _metering),
    "serve_load": ("Serving under load (the server as make run starts it)", _serve),
}


def render(run: dict[str, Any]) -> str:
    m = run["machine"]
    out = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (bench/, `python -m bench`) from docs/benchmarks.json; do not edit by",
        "hand. Every figure is measured next to its baseline in the same run on the same machine, and",
        "compared as a ratio (ours / baseline): absolute times on a shared machine drift, ratios much less.",
        "",
        f"- Date: {run['date']}" + _dates(run),
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB memory, kernel {m['kernel']}",
        f"- Python {m['python']}, PostgreSQL {m['postgresql']}",
        "- Load average at the start of each benchmark: "
        + ", ".join(f"{name} {r.get('load_average_before')}" for name, r in run["benchmarks"].items()),
        "",
        "| Benchmark | Figure | Ours | Baseline | Ratio |",
        "|---|---|---|---|---|",
    ]
    goals: list[tuple[str, str, bool]] = []
    for name, result in run["benchmarks"].items():
        title, rows_of = SECTIONS[name]
        if not result.get("ok"):
            out.append(f"| {title} | failed: {result.get('error')} | | | |")
            continue
        f = result["figures"]
        for figure, ours, baseline, ratio in rows_of(f):
            out.append(f"| {title} | {figure} | {ours} | {baseline} | {ratio} |")
        goals += [(title, goal, met) for goal, met in (f.get("goals") or {}).items()]
    scale = run["benchmarks"].get("operator_scale") or {}
    if scale.get("ok"):
        out += curve_table(scale["figures"])
    out += ["", "## Goals", "", "| Benchmark | Goal | Met |", "|---|---|---|"]
    out += [f"| {title} | {goal} | {'yes' if met else '**no**'} |" for title, goal, met in goals]
    out += ["", "## Sizes and durations", "", "| Benchmark | Size | Seconds |", "|---|---|---|"]
    out += [f"| {name} | {r['size']} | {r['seconds']} |" for name, r in run["benchmarks"].items()]
    notes = (REPO / "bench" / "NOTES.md").read_text() if (REPO / "bench" / "NOTES.md").exists() else ""
    return "\n".join(out) + "\n" + (f"\n{notes}" if notes else "")


def _dates(run: dict[str, Any]) -> str:
    """The dates of benchmarks measured on another day than the run's (merged in with --merge)."""
    dates = {name: r.get("date", run["date"]) for name, r in run["benchmarks"].items()}
    other = {name: date for name, date in dates.items() if date != run["date"]}
    return "; measured earlier: " + ", ".join(f"{n} {d}" for n, d in other.items()) if other else ""


def write_docs(run: dict[str, Any]) -> None:
    DOCS_JSON.write_text(json.dumps(run, indent=2, default=str) + "\n")
    DOCS_MD.write_text(render(run))


def merge_docs(run: dict[str, Any], order: list[str]) -> None:
    """docs/benchmarks.{json,md} with this run's benchmarks replacing their earlier entries (the others keep
    theirs, each with the date it was measured), in `order`."""
    earlier = json.loads(DOCS_JSON.read_text()) if DOCS_JSON.exists() else {"benchmarks": {}}
    for result in earlier["benchmarks"].values():
        result.setdefault("date", earlier.get("date"))
    merged = {**earlier["benchmarks"], **run["benchmarks"]}
    write_docs({**run, "benchmarks": {name: merged[name] for name in order if name in merged}})


def main() -> int:
    """`python -m bench.report`: regenerate docs/benchmarks.md from docs/benchmarks.json."""
    DOCS_MD.write_text(render(json.loads(DOCS_JSON.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
