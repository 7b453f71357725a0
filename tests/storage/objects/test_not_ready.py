"""Object storage while its server is not up (`make run` serves before SeaweedFS is built, or the service is
down): writes answer 503 object_storage_unavailable with Retry-After, never a 500, and say the server is not
ready yet while the bring-up is building it; the console's storage pages say so too. The service is a closed
port on 127.0.0.1, so every call is refused at once."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from apps.core import build_status as bs
from apps.storage.objects.models import AccessKey, Bucket
from tests.conftest import Actor
from tests.console.helpers import client_for, page
from tests.console.html_tree import parse
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db

DOWN = {
    "ENDPOINT_URL": "http://127.0.0.1:9",
    "IAM_ENDPOINT_URL": "",
    "PUBLIC_ENDPOINT_URL": "",
    "REGION": "us-east-1",
    "ACCESS_KEY_ID": "GPUCLOUDADMINTEST",
    "SECRET_ACCESS_KEY": "not-a-real-secret-not-a-real-secret-0000",
    "ADDRESSING_STYLE": "path",
    "BUCKET_PREFIX": "test",
    "TIMEOUT_SECONDS": 1,
}


@pytest.fixture
def service_down(settings: Any) -> None:
    settings.OBJECT_STORAGE = DOWN


@pytest.fixture
def s3_building(settings: Any, tmp_path: Path) -> None:
    """The bring-up's status: SeaweedFS still being built, 300 s into an expected 900."""
    settings.BUILD_STATUS_FILE = str(tmp_path / "build-status.json")
    now = time.time()
    bs.write(
        settings.BUILD_STATUS_FILE,
        {
            "pid": os.getpid(),
            "started": now - 300,
            "expected_total": 900.0,
            "expected_by": {"s3": 900.0},
            "pieces": [
                {"name": "weed", "label": "SeaweedFS", "state": "running", "started": now - 300},
                {"name": "s3", "label": "start object storage", "state": "waiting"},
            ],
        },
    )


def create_bucket(actor: Actor) -> Any:
    return actor.token_client().post(actor.url("/buckets"), {"name": "datasets"}, format="json")


def create_key(actor: Actor) -> Any:
    return actor.token_client().post(actor.url("/access-keys"), {"name": "ci"}, format="json")


@pytest.mark.usefixtures("service_down")
def test_a_service_that_does_not_answer_is_503_with_retry_after(owner: Actor) -> None:
    for response in (create_bucket(owner), create_key(owner)):
        error = assert_error(response, 503, "object_storage_unavailable")
        assert response["Retry-After"] == "30"
        assert error["message"] == "The object storage service is unavailable; try again later."
    assert not Bucket.objects.exists() and not AccessKey.objects.exists()


@pytest.mark.usefixtures("service_down", "s3_building")
def test_while_make_run_builds_it_it_says_not_ready_yet(owner: Actor) -> None:
    response = create_bucket(owner)

    error = assert_error(response, 503, "object_storage_unavailable")
    assert response["Retry-After"] == "30"
    # 600 s left of the measured build, less the test's own seconds.
    assert re.fullmatch(
        r"Object storage is not ready yet: its local server is still being built, about (10 min|9 min \d+ s) "
        r"left; try again later\.",
        error["message"],
    ), error["message"]
    assert not Bucket.objects.exists()


@pytest.mark.usefixtures("service_down", "s3_building")
def test_the_console_storage_pages_say_it_is_not_ready_yet(owner: Actor) -> None:
    client = client_for(owner.user)
    for name in ("buckets", "access_keys"):
        response = client.get(page(name, owner.tenant))
        assert response.status_code == 200, name
        note = parse(response.content.decode()).by_id("storage-unavailable").text
        assert note.startswith("Object storage is not ready yet: its local server is still being built"), note
        assert note.endswith("Buckets and access keys can be created once it is up.")

    response = client.post(page("buckets", owner.tenant), {"name": "datasets"})
    assert response.status_code == 503
    assert "not ready yet" in parse(response.content.decode()).by_id("form-error").text


@pytest.mark.usefixtures("service_down")
def test_without_a_bring_up_the_pages_show_no_note_until_a_call_fails(owner: Actor, settings: Any) -> None:
    settings.BUILD_STATUS_FILE = None
    response = client_for(owner.user).get(page("buckets", owner.tenant))
    assert 'id="storage-unavailable"' not in response.content.decode()
