"""bench/report.py and operator_scale's curve: the size table docs/benchmarks.md shows, and its growth."""

from __future__ import annotations

from bench import operator_scale, report


def figures(pods: int, resync: float, cold: float) -> dict:
    return {
        "nodes": pods // 10,
        "full_resync_seconds": resync,
        "bare_list_seconds": resync / 2,
        "resync_split": {"ours_seconds": 0.1, "kube_seconds": 0.2, "db_seconds": 0.3},
        "cold_start_seconds": cold,
        "raw_cold_start": {"seconds": cold / 3},
        "watch_to_db_lag": {"p99_ms": 12.5},
        "operator_rss_mib": {"steady": 200.0},
    }


def test_run_curve_keeps_a_point_per_size_and_the_growth_against_linear() -> None:
    settled: list = []
    made = {
        1000: figures(1000, 1.0, 10.0),
        5000: figures(5000, 5.0, 50.0),
        20000: figures(20000, 40.0, 200.0),
    }
    out = operator_scale.run_curve(
        [1000, 5000, 20000], lambda _: None, run_one=lambda n, _: made[n], settle=settled.append
    )
    assert len(settled) == 2  # the load settles before the second and third sizes
    assert [p["pods"] for p in out["curve"]] == [1000, 5000, 20000]
    assert out["full_resync_seconds"] == 5.0  # the size closest to DEFAULT_N keeps the single-size rows
    assert out["curve_growth"]["cold_start_seconds"] == 1.0  # 20x the pods, 20x the time: linear
    assert out["curve_growth"]["resync_seconds"] == 2.0  # 40x the time for 20x the pods


def test_curve_table_has_a_row_per_size_with_the_split() -> None:
    points = [operator_scale.curve_point(n, figures(n, n / 1000, n / 100)) for n in (1000, 20000)]
    lines = report.curve_table({"curve": points, "curve_growth": {"resync_seconds": 1.0}})
    header = next(line for line in lines if line.startswith("| Pods"))
    assert "our code" in header and "apiserver" in header and "Raw creation" in header
    rows = [line for line in lines if line.startswith("| 1000 ") or line.startswith("| 20000 ")]
    assert rows == [
        "| 1000 | 100 | 1.0 | 0.5 | 0.1 | 0.2 | 0.3 | 10.0 | 3.3333333333333335 | 12.5 | 200.0 |",
        "| 20000 | 2000 | 20.0 | 10.0 | 0.1 | 0.2 | 0.3 | 200.0 | 66.66666666666667 | 12.5 | 200.0 |",
    ]
    assert "20x" in lines[-1] and "resync 1.0" in lines[-1]
    assert report.curve_table({}) == []  # a single-size run has no curve section


def _spent(parts: dict[str, float], per: int) -> dict:
    total = sum(parts.values())
    return {
        "cpu_seconds": parts,
        "cpu_seconds_total": total,
        "cpu_ms_per_unit": {k: round(1000 * v / per, 1) for k, v in parts.items()},
        "cores": 2,
        "cores_busy": 0.9,
    }


def test_burst_rows_show_the_cpu_each_part_spent_and_the_floor_it_sets() -> None:
    figures = {
        "launches": 100, "tenants": 2, "clients": 4, "ours_seconds": 30.0, "baseline_seconds": 10.0,
        "ratio": 3.0, "admitted": 100, "baseline_pods": 100, "ours_admission_seconds": 10.0,
        "responses": {"201": 100}, "quota_overruns": 0, "small_tenants_admitted": 0, "small_tenants_limit": 0,
        "cpu": {
            "ours_admission": _spent({"web": 4.0, "postgres": 1.0}, 100),
            "ours_until_running": _spent({"web": 4.0, "kube-apiserver": 6.0, "postgres": 2.0}, 100),
            "baseline": _spent({"kube-apiserver": 5.0, "etcd": 1.0}, 100),
        },
        "cpu_floor": {
            "answers_per_second_at_most": 40.0, "ours_seconds_at_least": 6.0,
            "baseline_seconds_at_least": 3.0,
        },
    }  # fmt: skip
    rows = {row[0]: row[1:] for row in report._burst(figures)}
    assert rows["CPU until all run (s, all processes) / cores busy"] == ("12.0 / 0.9", "6.0 / 0.9", "2.0x")
    assert rows["CPU per pod by part (ms)"][0] == "kube-apiserver 60.0, web 40.0, postgres 20.0"
    assert rows["CPU floor: answers a second at most / seconds until all run at least"][:2] == (
        "40.0 / 6.0",
        3.0,
    )
    del figures["cpu"]
    assert not [row for row in report._burst(figures) if "CPU" in row[0]]  # older results render as before
