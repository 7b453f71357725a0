"""Generate gpucloud_cli/models.py (TypedDicts and Literal enums) from the API's OpenAPI schema.

    python scripts/gen_sdk_models.py            # schema from `manage.py spectacular`, rewrite models.py
    python scripts/gen_sdk_models.py --check    # exit 1 if the committed models.py is out of date
    python scripts/gen_sdk_models.py --url http://127.0.0.1:8000/api/v1/schema/ --token gpc_...

The output depends only on the schema (sorted, no timestamps), so --check is a plain text comparison;
tests/cli/test_models_current.py runs it.
"""

from __future__ import annotations

import argparse
import json
import keyword
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "gpucloud_cli" / "models.py"
SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}

HEADER = '''"""Types of the gpucloud REST API, generated from its OpenAPI schema: do not edit.

Regenerate with `python scripts/gen_sdk_models.py` after changing the API (a test fails while this file is
out of date). Responses are TypedDicts: plain dicts at runtime, checked by type checkers. Decimal amounts
and timestamps travel as strings, as in the JSON.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

'''


def schema_from_manage() -> dict[str, Any]:
    env = {**os.environ}
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--format", "openapi-json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def schema_from_url(url: str, token: str | None) -> dict[str, Any]:
    headers = {"Accept": "application/vnd.oai.openapi+json, application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    full = url + ("&" if "?" in url else "?") + "format=json"
    request = urllib.request.Request(full, headers=headers)  # noqa: S310 (a URL the developer gave)
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        return json.loads(response.read())


def type_of(node: dict[str, Any]) -> str:
    """The Python annotation for one schema node."""
    if "$ref" in node:
        base = node["$ref"].rsplit("/", 1)[-1]
    elif "allOf" in node and len(node["allOf"]) == 1:
        base = type_of(node["allOf"][0])
    elif "oneOf" in node:  # a nullable choice: oneOf [its enum, NullEnum]
        base = " | ".join(dict.fromkeys(type_of(option) for option in node["oneOf"]))
    elif "enum" in node:
        base = "Literal[" + ", ".join(json.dumps(v) for v in node["enum"] if v not in ("", None)) + "]"
    elif node.get("type") == "array":
        base = f"list[{type_of(node.get('items', {}))}]"
    elif node.get("type") == "object":
        extra = node.get("additionalProperties")
        base = f"dict[str, {type_of(extra)}]" if isinstance(extra, dict) and extra else "dict[str, Any]"
    elif node.get("type") in SCALARS:
        base = SCALARS[node["type"]]
    else:
        base = "Any"
    if node.get("nullable") and base != "Any":
        base = f"{base} | None"
    return base


def _enum(name: str, node: dict[str, Any]) -> list[str]:
    values = [json.dumps(v) for v in node["enum"] if v not in ("", None)] or ["None"]  # NullEnum
    one_line = f"{name} = Literal[{', '.join(values)}]"
    if len(one_line) <= 110:
        return [one_line]
    return [f"{name} = Literal[", *[f"    {v}," for v in values], "]"]


def _typed_dict(name: str, node: dict[str, Any]) -> list[str]:
    properties: dict[str, Any] = node.get("properties", {})
    required = set(node.get("required", []))
    fields = []
    for key, prop in properties.items():
        annotation = type_of(prop)
        fields.append((key, annotation if key in required else f"NotRequired[{annotation}]"))
    if any(not key.isidentifier() or keyword.iskeyword(key) for key, _ in fields):
        lines = [f"{name} = TypedDict(", f'    "{name}",', "    {"]
        lines += [f'        "{key}": {annotation},' for key, annotation in fields]
        return [*lines, "    },", ")"]
    lines = [f"class {name}(TypedDict):"]
    lines += [f"    {key}: {annotation}" for key, annotation in fields] or ["    pass"]
    return lines


def render(schema: dict[str, Any]) -> str:
    components: dict[str, Any] = schema.get("components", {}).get("schemas", {})
    blocks: list[list[str]] = [[f"API_VERSION = {json.dumps(schema.get('info', {}).get('version', ''))}"]]
    for name in sorted(components):
        node = components[name]
        if "enum" in node:
            blocks.append(_enum(name, node))
        elif node.get("type") == "object" or "properties" in node:
            blocks.append(_typed_dict(name, node))
        else:
            blocks.append([f"{name} = {type_of(node)}"])
    return HEADER + "\n".join("\n".join(block) + "\n\n" for block in blocks).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="read the schema from a running server's /api/v1/schema/")
    parser.add_argument("--token", help="API token for --url (if the schema needs one)")
    parser.add_argument("--schema", type=Path, help="read the schema from a JSON file")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if --output is out of date")
    args = parser.parse_args(argv)
    if args.schema:
        schema = json.loads(args.schema.read_text())
    elif args.url:
        schema = schema_from_url(args.url, args.token)
    else:
        schema = schema_from_manage()
    text = render(schema)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(
                f"{args.output} is out of date with the API schema: run python scripts/gen_sdk_models.py",
                file=sys.stderr,
            )
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
