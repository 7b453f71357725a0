"""bench/cpu.py: which part of the machine a process is, and the CPU it spent between two samples."""

from __future__ import annotations

import time

import pytest

from bench import cpu


@pytest.mark.parametrize(
    ("argv", "part"),
    [
        (
            ["/root/.cache/gpucloud/bin/kubernetes-v1.35.0/kube-apiserver", "--etcd-servers=http://x"],
            "kube-apiserver",
        ),
        (["/root/.cache/gpucloud/bin/etcd-v3.6.0/etcd", "--data-dir=/tmp/x"], "etcd"),
        (["postgres: 15/main: gpucloud gpucloud_bench 127.0.0.1(5432) idle"], "postgres"),
        (["redis-server 127.0.0.1:6390"], "redis"),  # its title rewritten into one argument
        (["/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/postgresql/15/main"], "postgres"),
        (["/work/main/.venv/bin/python", "-m", "gunicorn", "config.wsgi:application"], "web"),
        (["/work/main/.venv/bin/python", "-m", "celery", "-A", "config", "worker"], "worker"),
        (["/work/main/.venv/bin/python", "manage.py", "operator", "--region=us-east-1"], "operator"),
        (["/work/main/.venv/bin/python", "-m", "bench", "burst_admission"], "bench"),
        # A compiler whose arguments name a cluster program is not that program.
        (["/usr/lib/go/pkg/tool/linux_amd64/compile", "-p", "k8s.io/kubernetes/cmd/kube-apiserver"], "other"),
        ([], "other"),
    ],
)
def test_processes_are_told_apart_by_their_program(argv: list[str], part: str) -> None:
    assert cpu.part_of(argv) == part


def test_a_sample_counts_the_cpu_a_process_burns() -> None:
    before = cpu.sample()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = cpu.sample()
    spent = cpu.spent(before, after, wall_seconds=1.0, per=3)
    assert spent["cpu_seconds"]["other"] >= 0.25  # pytest is "other"; other processes only add to it
    assert spent["cpu_ms_per_unit"]["other"] == pytest.approx(
        1000 * spent["cpu_seconds"]["other"] / 3, abs=0.1
    )


def test_spent_is_per_part_and_drops_parts_that_did_nothing() -> None:
    before = {"web": 10.0, "postgres": 5.0, "etcd": 1.0}
    after = {"web": 13.0, "postgres": 6.0, "etcd": 1.0, "operator": 0.5}
    spent = cpu.spent(before, after, wall_seconds=2.0, per=10)
    assert spent["cpu_seconds"] == {"web": 3.0, "postgres": 1.0, "operator": 0.5}
    assert spent["cpu_seconds_total"] == 4.5
    assert spent["cpu_ms_per_unit"]["web"] == 300.0
    assert spent["cores_busy"] == round(4.5 / (2.0 * spent["cores"]), 2)
