"""config/gunicorn.py: threads, and each worker's database pool as big as its threads unless set."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from config import gunicorn as gunicorn_config


def _forget_pool_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_POOL_MAX_SIZE", "placeholder")  # so teardown restores the original
    monkeypatch.delenv("DATABASE_POOL_MAX_SIZE")


def test_a_workers_database_pool_is_as_big_as_its_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    _forget_pool_size(monkeypatch)
    gunicorn_config.post_fork(SimpleNamespace(cfg=SimpleNamespace(threads=7)), worker=None)
    assert os.environ["DATABASE_POOL_MAX_SIZE"] == "7"


def test_an_explicit_pool_size_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_POOL_MAX_SIZE", "2")
    gunicorn_config.post_fork(SimpleNamespace(cfg=SimpleNamespace(threads=7)), worker=None)
    assert os.environ["DATABASE_POOL_MAX_SIZE"] == "2"


def test_requests_queue_for_threads_instead_of_being_refused() -> None:
    assert gunicorn_config.worker_class == "gthread"
    assert gunicorn_config.worker_connections > gunicorn_config.threads
