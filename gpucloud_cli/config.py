"""Where the CLI keeps its credentials: $XDG_CONFIG_HOME/gpucloud/config.json (~/.config/gpucloud/...).

The file holds API tokens, so it is created 0600 (in a 0700 directory) and replaced atomically; a file that
group or others can read is refused with a warning, as ssh refuses a readable private key. Settings resolve
in this order: command-line flags, then GPUCLOUD_API_URL / GPUCLOUD_TOKEN / GPUCLOUD_TENANT, then the profile
(--profile, else GPUCLOUD_PROFILE, else the file's default profile, else "default").
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PROFILE = "default"


class ConfigError(Exception):
    pass


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gpucloud"


def config_path() -> Path:
    return config_dir() / "config.json"


def insecure(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


@dataclass
class Profile:
    name: str
    api_url: str = ""
    token: str = ""
    tenant: str = ""
    email: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"api_url": self.api_url, "token": self.token, "tenant": self.tenant, "email": self.email}


@dataclass
class ConfigFile:
    path: Path
    default_profile: str = DEFAULT_PROFILE
    profiles: dict[str, Profile] = field(default_factory=dict)
    refused: bool = False  # the file exists but others can read it: never read, never overwritten

    @classmethod
    def load(cls, path: Path | None = None, *, warn: bool = True) -> ConfigFile:
        path = path or config_path()
        if not path.exists():
            return cls(path)
        if insecure(path):
            if warn:
                print(
                    f"warning: ignoring {path}: it is readable by group or others and holds API tokens; "
                    f"run `chmod 600 {path}`",
                    file=sys.stderr,
                )
            return cls(path, refused=True)
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        profiles = {
            name: Profile(name=name, **{k: str(v) for k, v in values.items() if k in Profile.__annotations__})
            for name, values in (raw.get("profiles") or {}).items()
            if isinstance(values, dict)
        }
        return cls(path, str(raw.get("default_profile") or DEFAULT_PROFILE), profiles)

    def save(self) -> None:
        if self.refused:
            raise ConfigError(
                f"{self.path} is readable by group or others; fix it with `chmod 600 {self.path}` first"
            )
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        body: dict[str, Any] = {
            "default_profile": self.default_profile,
            "profiles": {name: p.as_dict() for name, p in sorted(self.profiles.items())},
        }
        # mkstemp creates the file 0600 from the start: the token is never on disk with wider permissions.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".config-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(body, handle, indent=2)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass(frozen=True)
class Settings:
    """What a command runs with, after flags, environment and profile are combined."""

    profile: str
    api_url: str
    token: str
    tenant: str


def profile_name(flag: str | None, config: ConfigFile) -> str:
    return flag or os.environ.get("GPUCLOUD_PROFILE") or config.default_profile or DEFAULT_PROFILE


def resolve(
    config: ConfigFile,
    *,
    profile: str | None = None,
    api_url: str | None = None,
    tenant: str | None = None,
) -> Settings:
    name = profile_name(profile, config)
    stored = config.profiles.get(name, Profile(name=name))
    env_token = os.environ.get("GPUCLOUD_TOKEN")
    return Settings(
        profile=name,
        api_url=(api_url or os.environ.get("GPUCLOUD_API_URL") or stored.api_url).rstrip("/"),
        token=env_token or stored.token,
        # A token from the environment may belong to another tenant than the profile's: ask the API.
        tenant=tenant or os.environ.get("GPUCLOUD_TENANT") or ("" if env_token else stored.tenant),
    )
