"""docs/operations.md says what the chart does: the object names its kubectl commands use exist in a
render, and the replica limits it gives are the schema's."""

from __future__ import annotations

import json
import re

import pytest

from tests.helm.support import CHART, REPO_ROOT, render

pytestmark = pytest.mark.sandbox  # helm (and kubectl) come from the sandbox build

DOCS = REPO_ROOT / "docs" / "operations.md"
KINDS = {"deploy": "Deployment", "job": "Job", "svc": "Service"}


def _text() -> str:
    return DOCS.read_text()


def kubectl_references() -> list[tuple[str, str]]:
    """(kind, name) of every `deploy/...`, `job/...` and `svc/...` named in a kubectl command."""
    found = re.findall(r"\b(deploy|job|svc)/([a-z0-9<>-]+[a-z0-9>])", _text())
    return sorted(set(found))


def test_the_docs_name_objects_in_their_commands() -> None:
    assert ("job", "<release>-gpucloud-migrations") in kubectl_references()


@pytest.mark.parametrize(("kind", "name"), kubectl_references())
def test_objects_named_in_kubectl_commands_exist(kind: str, name: str) -> None:
    """`<release>` stands for any release name not containing "gpucloud"; a literal name is for the
    release `gpucloud` that "Installing" uses."""
    release = "acme" if "<release>" in name else "gpucloud"
    assert "<" not in name.replace("<release>", ""), f"unknown placeholder in {kind}/{name}"
    concrete = name.replace("<release>", release)
    docs = render(release=release)
    names = {d["metadata"]["name"] for d in docs if d["kind"] == KINDS[kind]}
    assert concrete in names, f"{kind}/{name}: a release {release!r} renders {sorted(names)}"


def test_beat_replica_limit_is_the_schemas() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    maximum = schema["properties"]["beat"]["properties"]["replicas"]["maximum"]
    (row,) = [line for line in _text().splitlines() if line.startswith("| beat |")]
    limits = {int(n) for n in re.findall(r"at most (\d+)", row)}
    assert limits == {maximum}, row
    assert "never" not in row
