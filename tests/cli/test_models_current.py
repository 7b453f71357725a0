"""gpucloud_cli/models.py must match the API's OpenAPI schema: regenerate it when the API changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import NotRequired, get_type_hints

from django.conf import settings

from gpucloud_cli import models
from scripts import gen_sdk_models

REPO = Path(settings.BASE_DIR)


def test_the_committed_models_match_the_schema() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_sdk_models.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_an_instance_types_its_connection() -> None:
    """`instance["connection"]["ssh_command"]` is a str to a type checker, not Any."""
    assert get_type_hints(models.Instance)["connection"] is models.InstanceConnection
    hints = get_type_hints(models.InstanceConnection, include_extras=True)
    assert hints == {
        "host": NotRequired[str],
        "port": NotRequired[int],
        "user": NotRequired[str],
        "ssh_command": NotRequired[str],  # absent until the instance runs
        "host_key": NotRequired[str],
        "known_hosts": NotRequired[str],
    }


def test_the_generator_types_what_the_schema_says() -> None:
    schema = {
        "info": {"version": "9"},
        "components": {
            "schemas": {
                "Thing": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "count": {"type": "integer", "nullable": True},
                        "state": {"$ref": "#/components/schemas/StateEnum"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "from": {"type": "string"},
                    },
                    "required": ["id", "count"],
                },
                "StateEnum": {"enum": ["on", "off"], "type": "string"},
            }
        },
    }
    text = gen_sdk_models.render(schema)
    assert 'StateEnum = Literal["on", "off"]' in text
    assert (
        '    "Thing",\n    {\n        "id": str,\n        "count": int | None,\n' in text
    )  # `from` is a keyword
    assert '        "tags": NotRequired[list[str]],\n        "labels": NotRequired[dict[str, str]],' in text
    namespace: dict[str, object] = {}
    exec(compile(text, "models.py", "exec"), namespace)  # noqa: S102 (our own generated code)
    assert namespace["API_VERSION"] == "9"
