"""Calling the volume and instance APIs as a tenant's token would, with on-commit work run at commit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.test import TestCase
from rest_framework.response import Response

from tests.conftest import Actor


@dataclass
class VolumeApi:
    actor: Actor

    def _call(self, method: str, suffix: str, body: Any = None, **kwargs: Any) -> Response:
        client = self.actor.token_client()
        with TestCase.captureOnCommitCallbacks(execute=True):
            return getattr(client, method)(self.actor.url(suffix), body, format="json", **kwargs)

    def post(self, suffix: str, body: Any = None, **kwargs: Any) -> Response:
        return self._call("post", suffix, body, **kwargs)

    def patch(self, suffix: str, body: Any = None) -> Response:
        return self._call("patch", suffix, body)

    def delete(self, suffix: str) -> Response:
        return self._call("delete", suffix)

    def get(self, suffix: str) -> Response:
        return self.actor.token_client().get(self.actor.url(suffix))

    def create(self, name: str = "data", size_gib: int = 10, region: str = "us-east-1") -> dict[str, Any]:
        response = self.post("/volumes", {"name": name, "size_gib": size_gib, "region": region})
        assert response.status_code == 201, response.json()
        return response.json()

    def launch(self, *mounts: tuple[str, str], **body: Any) -> Response:
        payload = {"instance_type": "cpu-4x", "region": "us-east-1", "image": "pytorch", **body}
        payload["volumes"] = [{"volume_id": v, "mount_path": p} for v, p in mounts]
        return self.post("/instances", payload)

    def volume(self, volume_id: str) -> dict[str, Any]:
        response = self.get(f"/volumes/{volume_id}")
        assert response.status_code == 200, response.json()
        return response.json()
