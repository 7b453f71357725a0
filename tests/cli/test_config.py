"""The config file: 0600 from the moment it exists, refused when others can read it, and resolution order."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gpucloud_cli.config import ConfigError, ConfigFile, Profile, config_path, resolve


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GPUCLOUD_API_URL", "GPUCLOUD_TOKEN", "GPUCLOUD_TENANT", "GPUCLOUD_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def saved(path: Path | None = None) -> ConfigFile:
    config = ConfigFile(path or config_path())
    config.profiles["default"] = Profile("default", "http://a.example", "gpc_a", "alpha", "a@example.com")
    config.profiles["work"] = Profile("work", "http://b.example", "gpc_b", "beta", "b@example.com")
    config.save()
    return config


def test_saved_0600_in_a_0700_directory_even_with_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        config = saved()
    finally:
        os.umask(previous)
    assert config.path == tmp_path / "xdg" / "gpucloud" / "config.json"
    assert stat.S_IMODE(config.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.path.parent.stat().st_mode) == 0o700
    assert not [p for p in config.path.parent.iterdir() if p.name != "config.json"]  # no temp file left
    loaded = ConfigFile.load()
    assert loaded.profiles["work"] == Profile("work", "http://b.example", "gpc_b", "beta", "b@example.com")


def test_a_rewrite_replaces_the_file_and_stays_0600() -> None:
    config = saved()
    config.path.chmod(0o600)
    config.default_profile = "work"
    config.save()
    assert ConfigFile.load().default_profile == "work"
    assert stat.S_IMODE(config.path.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_file_others_can_read_is_refused_with_a_warning(
    mode: int, capsys: pytest.CaptureFixture[str]
) -> None:
    config = saved()
    config.path.chmod(mode)
    loaded = ConfigFile.load()
    assert loaded.refused and loaded.profiles == {}
    assert "warning: ignoring" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="chmod 600"):
        loaded.save()


def test_a_corrupt_file_is_an_error_not_a_traceback() -> None:
    path = config_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="cannot read"):
        ConfigFile.load()


def test_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    config = saved()
    assert resolve(config) == resolve(config, profile="default")
    assert resolve(config).token == "gpc_a"
    assert resolve(config, profile="work").tenant == "beta"
    monkeypatch.setenv("GPUCLOUD_PROFILE", "work")
    assert resolve(config).api_url == "http://b.example"
    assert resolve(config, profile="default").api_url == "http://a.example"  # the flag beats the variable
    monkeypatch.setenv("GPUCLOUD_API_URL", "http://env.example/")
    monkeypatch.setenv("GPUCLOUD_TOKEN", "gpc_env")
    settings = resolve(config)
    assert (settings.api_url, settings.token, settings.tenant) == ("http://env.example", "gpc_env", "")
    assert resolve(config, api_url="http://flag.example").api_url == "http://flag.example"
    monkeypatch.setenv("GPUCLOUD_TENANT", "gamma")
    assert resolve(config).tenant == "gamma"
    assert resolve(config, tenant="delta").tenant == "delta"
