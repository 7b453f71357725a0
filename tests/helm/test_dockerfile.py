"""The Dockerfile, checked without a container engine: what it copies exists and passes .dockerignore, it
runs as a non-root user, bakes in no secret, and its collectstatic step works with exactly the build-time
values it gives (production settings, no database reachable)."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.helm.support import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for line in lines
        if line and not line.startswith("#")
        for parts in [line.split(None, 1)]
    ]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_runtime_is_slim_python_as_a_numeric_non_root_user() -> None:
    steps = final_stage()
    assert steps[0][1].split()[0] == "${PYTHON_IMAGE}"
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE.read_text()
    users = [args for op, args in steps if op == "USER"]
    assert users == ["10001:10001"]  # numeric, so the kubelet can verify runAsNonRoot
    # Nothing runs as root after the switch.
    assert [op for op, _ in steps[[op for op, _ in steps].index("USER") :]] == ["USER", "EXPOSE", "CMD"]


def test_no_secret_is_baked_into_the_image() -> None:
    for op, args in instructions():
        if op in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"SECRET|PASSWORD|TOKEN|DATABASE_URL|REDIS_URL|_KEY", args), args


def test_entrypoint_is_gunicorn_on_the_pod_address() -> None:
    (cmd,) = [args for op, args in final_stage() if op == "CMD"]
    words = shlex.split(cmd.strip("[]").replace(",", " "))
    assert words[:3] == ["gunicorn", "config.wsgi:application", "--bind=0.0.0.0:8000"]
    assert "--worker-tmp-dir=/tmp" in words  # the pod's emptyDir
    assert "--config=python:config.gunicorn" in words  # gunicorn's own log as JSON, redacted
    assert any(
        "DJANGO_SETTINGS_MODULE=config.settings.production" in a for op, a in final_stage() if op == "ENV"
    )


def _ignored(path: str) -> bool:
    """.dockerignore's verdict on a path (last matching pattern wins; `!` re-includes)."""
    verdict = False
    for pattern in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            verdict = not negate
    return verdict


def test_everything_copied_exists_and_reaches_the_build_context() -> None:
    sources = [
        src
        for op, args in instructions()
        if op == "COPY" and not args.startswith("--from")
        for src in args.split()[:-1]
    ]
    assert {"pyproject.toml", "requirements/constraints.txt", "manage.py", "config", "apps"} <= set(sources)
    for src in sources:
        assert (REPO_ROOT / src).exists(), src
        assert not _ignored(src), src
    for private in (".env", ".venv", "var", ".git", "tests", "gpucloud.egg-info"):
        assert _ignored(private), private


def test_collectstatic_step_works_with_its_build_time_values(tmp_path: Path) -> None:
    (run,) = [args for op, args in final_stage() if op == "RUN" and "collectstatic" in args]
    command = shlex.split(run.split("&&")[0])
    assignments = dict(word.split("=", 1) for word in command if re.match(r"^[A-Z_]+=", word))
    assert set(assignments) == {"SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS"}
    assert command[len(assignments) :][:3] == ["python", "manage.py", "collectstatic"]
    # Those values and the image's ENV only (no inherited settings), STATIC_ROOT redirected to tmp_path.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        **assignments,
    }
    script = (
        "import django, sys; from django.conf import settings; django.setup(); "
        "settings.STATIC_ROOT = sys.argv[1]; "
        "from django.core.management import call_command; "
        "call_command('collectstatic', '--noinput', verbosity=0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "static")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "static" / "staticfiles.json").is_file()  # the manifest whitenoise serves from
    assert (tmp_path / "static" / "js" / "htmx.min.js").is_file()
