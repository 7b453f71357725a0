"""Settings per environment: production refuses to start without its secrets; DEBUG is off everywhere unless
dev is asked for it (DEBUG=1); database connections are pooled and bounded except in the tests.

Each configuration is imported in a fresh interpreter with a controlled environment, because settings are
read once at import time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings import env

REPO = Path(__file__).resolve().parents[2]
STRONG_KEY = "k" * 20 + "Qx7-vR2#pL9@wZ4!mN8$"  # 40 characters, not the dev default
PRODUCTION_ENV = {
    "SECRET_KEY": STRONG_KEY,
    "DATABASE_URL": "postgres://gpucloud:gpucloud@127.0.0.1:5432/gpucloud",
    "ALLOWED_HOSTS": "cloud.example.com",
}
PRINT_DEBUG = (
    "import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = {module!r}; django.setup(); "
    "from django.conf import settings; print('DEBUG=' + str(settings.DEBUG))"
)
PRINT_SETTINGS = (
    "import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = {module!r}; django.setup(); "
    "from django.conf import settings; "
    "[print(name + '=' + repr(getattr(settings, name))) for name in "
    "('SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', 'TRUSTED_PROXY_HOPS')]"
)


def _base_env() -> dict[str, str]:
    """The current environment minus every variable the settings read, so each test sets its own."""
    drop = {
        "DJANGO_SETTINGS_MODULE",
        "SECRET_KEY",
        "DATABASE_URL",
        "ALLOWED_HOSTS",
        "DEBUG",
        "DATABASE_POOL",
        "DATABASE_POOL_MAX_SIZE",
        "DATABASE_POOL_TIMEOUT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "TRUSTED_PROXY_HOPS",
        "FIELD_ENCRYPTION_KEYS",
        "LOGS_ENCRYPTION_KEYS",
        "STORAGE_ENCRYPTION_KEYS",
    }
    return {k: v for k, v in os.environ.items() if k not in drop}


def _load(
    module: str, extra_env: dict[str, str], code: str = PRINT_DEBUG
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code.format(module=module)],
        env={**_base_env(), **extra_env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_starts_with_all_its_settings() -> None:
    result = _load("config.settings.production", PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert "DEBUG=False" in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS"])
def test_production_refuses_to_start_without(missing: str) -> None:
    result = _load("config.settings.production", {k: v for k, v in PRODUCTION_ENV.items() if k != missing})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert missing in result.stderr


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS"])
def test_production_treats_an_empty_value_as_missing(missing: str) -> None:
    result = _load("config.settings.production", {**PRODUCTION_ENV, missing: ""})
    assert result.returncode != 0
    assert missing in result.stderr


@pytest.mark.parametrize(
    "weak_key",
    ["insecure-dev-only-key-change-me", "short-but-random-7Qx", "insecure-" + "x" * 40],
)
def test_production_refuses_a_weak_secret_key(weak_key: str) -> None:
    result = _load("config.settings.production", {**PRODUCTION_ENV, "SECRET_KEY": weak_key})
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_ignores_a_debug_variable() -> None:
    result = _load("config.settings.production", {**PRODUCTION_ENV, "DEBUG": "true"})
    assert result.returncode == 0, result.stderr
    assert "DEBUG=False" in result.stdout


@pytest.mark.parametrize("module", ["config.settings.dev", "config.settings.test", "config.settings.base"])
def test_debug_is_off_by_default_even_for_make_run(module: str) -> None:
    result = _load(module, {})
    assert result.returncode == 0, result.stderr
    assert "DEBUG=False" in result.stdout


@pytest.mark.parametrize(
    ("module", "debug"),
    [("config.settings.dev", True), ("config.settings.test", False), ("config.settings.base", False)],
)
def test_debug_1_turns_debug_on_in_dev_only(module: str, debug: bool) -> None:
    result = _load(module, {"DEBUG": "1"})
    assert result.returncode == 0, result.stderr
    assert f"DEBUG={debug}" in result.stdout


PRINT_DATABASE = (
    "import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = {module!r}; django.setup(); "
    "from django.conf import settings; db = settings.DATABASES['default']; "
    "print('POOL=' + repr(db['OPTIONS'].get('pool')), 'AGE=' + repr(db['CONN_MAX_AGE']), "
    "'STATIC=' + settings.STORAGES['staticfiles']['BACKEND'], sep='\\n')"
)


@pytest.mark.parametrize("module", ["config.settings.dev", "config.settings.production"])
def test_connections_are_pooled_and_bounded(module: str) -> None:
    result = _load(module, {**PRODUCTION_ENV, "DATABASE_POOL_MAX_SIZE": "3"}, PRINT_DATABASE)
    assert result.returncode == 0, result.stderr
    pool, age, _ = result.stdout.splitlines()
    assert pool == "POOL={'min_size': 1, 'max_size': 3, 'timeout': 5, 'name': 'gpucloud'}"
    assert age == "AGE=0"  # Django refuses persistent connections with a pool


def test_the_pool_defaults_and_its_timeout_come_from_the_environment() -> None:
    result = _load("config.settings.dev", {"DATABASE_POOL_TIMEOUT": "9"}, PRINT_DATABASE)
    assert result.returncode == 0, result.stderr
    assert "'max_size': 4, 'timeout': 9" in result.stdout
    unpooled = _load("config.settings.dev", {"DATABASE_POOL": "0"}, PRINT_DATABASE)
    assert unpooled.stdout.splitlines()[:2] == ["POOL=None", "AGE=60"], unpooled.stderr


def test_the_tests_are_unpooled_unless_asked() -> None:
    result = _load("config.settings.test", {}, PRINT_DATABASE)
    assert result.stdout.splitlines()[:2] == ["POOL=None", "AGE=60"], result.stderr
    pooled = _load("config.settings.test", {"DATABASE_POOL": "1"}, PRINT_DATABASE)
    assert "'max_size': 4" in pooled.stdout, pooled.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DATABASE_POOL_MAX_SIZE", "0"), ("DATABASE_POOL_MAX_SIZE", "many"), ("DATABASE_POOL_TIMEOUT", "0")],
)
def test_a_bad_pool_setting_stops_the_settings(variable: str, value: str) -> None:
    result = _load("config.settings.dev", {variable: value}, PRINT_DATABASE)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


def test_make_run_stores_static_files_as_production_unless_debugging() -> None:
    manifest = "whitenoise.storage.CompressedManifestStaticFilesStorage"
    for module, extra in (("config.settings.dev", {}), ("config.settings.production", PRODUCTION_ENV)):
        result = _load(module, extra, PRINT_DATABASE)
        assert f"STATIC={manifest}" in result.stdout, (module, result.stderr)
    debugging = _load("config.settings.dev", {"DEBUG": "1"}, PRINT_DATABASE)
    assert f"STATIC={manifest}" not in debugging.stdout, debugging.stderr


def test_the_test_suite_runs_without_debug(settings) -> None:
    assert settings.DEBUG is False
    assert settings.EMAIL_BACKEND == "django.core.mail.backends.locmem.EmailBackend"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_env_bool_reads_the_usual_spellings(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool
) -> None:
    monkeypatch.setenv("GPUCLOUD_TEST_FLAG", raw)
    assert env.env_bool("GPUCLOUD_TEST_FLAG") is expected


@pytest.mark.parametrize("default", [True, False])
def test_env_bool_falls_back_to_the_default_when_unset_or_empty(
    monkeypatch: pytest.MonkeyPatch, default: bool
) -> None:
    monkeypatch.delenv("GPUCLOUD_TEST_FLAG", raising=False)
    assert env.env_bool("GPUCLOUD_TEST_FLAG", default) is default
    monkeypatch.setenv("GPUCLOUD_TEST_FLAG", "")
    assert env.env_bool("GPUCLOUD_TEST_FLAG", default) is default


@pytest.mark.parametrize("garbage", ["maybe", "2", "tru", "y e s", "-1"])
def test_env_bool_rejects_garbage(monkeypatch: pytest.MonkeyPatch, garbage: str) -> None:
    monkeypatch.setenv("GPUCLOUD_TEST_FLAG", garbage)
    with pytest.raises(ImproperlyConfigured, match="GPUCLOUD_TEST_FLAG"):
        env.env_bool("GPUCLOUD_TEST_FLAG")


def test_env_int_rejects_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUCLOUD_TEST_NUMBER", "ten")
    with pytest.raises(ImproperlyConfigured, match="GPUCLOUD_TEST_NUMBER"):
        env.env_int("GPUCLOUD_TEST_NUMBER", 1)


def test_env_list_splits_and_trims(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUCLOUD_TEST_LIST", " a.example.com, ,b.example.com ")
    assert env.env_list("GPUCLOUD_TEST_LIST") == ["a.example.com", "b.example.com"]


def test_a_bad_boolean_in_the_environment_stops_production(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _load("config.settings.production", {**PRODUCTION_ENV, "SESSION_COOKIE_SECURE": "sure"})
    assert result.returncode != 0
    assert "SESSION_COOKIE_SECURE" in result.stderr


def test_production_cookies_are_secure_and_the_session_cookie_is_http_only() -> None:
    result = _load("config.settings.production", PRODUCTION_ENV, code=PRINT_SETTINGS)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    for line in ("SESSION_COOKIE_SECURE=True", "CSRF_COOKIE_SECURE=True", "SESSION_COOKIE_HTTPONLY=True"):
        assert line in printed


@pytest.mark.parametrize(("raw", "expected"), [(None, 0), ("", 0), ("1", 1), ("2", 2)])
def test_trusted_proxy_hops_is_read_from_the_environment(raw: str | None, expected: int) -> None:
    extra = {} if raw is None else {"TRUSTED_PROXY_HOPS": raw}
    result = _load("config.settings.production", {**PRODUCTION_ENV, **extra}, code=PRINT_SETTINGS)
    assert result.returncode == 0, result.stderr
    assert f"TRUSTED_PROXY_HOPS={expected}" in result.stdout.splitlines()


@pytest.mark.parametrize("module", ["config.settings.production", "config.settings.base"])
@pytest.mark.parametrize("garbage", ["one", "-1", "1.5"])
def test_a_bad_trusted_proxy_hops_stops_the_settings(module: str, garbage: str) -> None:
    result = _load(module, {**PRODUCTION_ENV, "TRUSTED_PROXY_HOPS": garbage})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "TRUSTED_PROXY_HOPS" in result.stderr


KEY_SETS = (
    "import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = {module!r}; django.setup(); "
    "from apps.core import crypto; "
    "print('FIELD=' + str(crypto.available(crypto.FIELD)), 'LOGS=' + str(crypto.available(crypto.LOGS)))"
)


def test_production_derives_no_key_from_secret_key() -> None:
    """Every process has SECRET_KEY; in production it opens no credential: web (given only
    LOGS_ENCRYPTION_KEYS) cannot read the operator's kubeconfigs."""
    web = _load(
        "config.settings.production",
        {**PRODUCTION_ENV, "LOGS_ENCRYPTION_KEYS": "bq3TLkHc1H1Jr8CkR0tD1o6gGXlpB0F8lN5cQ8XcZzE="},
        KEY_SETS,
    )
    assert web.returncode == 0, web.stderr
    assert web.stdout.split() == ["FIELD=False", "LOGS=True"]
    dev = _load("config.settings.dev", {}, KEY_SETS)
    assert dev.stdout.split() == ["FIELD=True", "LOGS=True"], dev.stderr
