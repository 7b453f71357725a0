"""The console's banner while `make run` brings up the sandbox and object storage behind it
(apps/console/build_banner.py, templates/console/_build_banner.html): shown to signed-in users while building
(with what is building, for how long and the time left), on a failure and on an interruption; gone once
everything is up, and never shown to anonymous visitors or where no status file exists (production)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.core import build_status as bs
from tests.conftest import login_staff
from tests.console.html_tree import parse
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

HOME = reverse("console:home")
POLL = reverse("console:build_status")


def write_status(path: Path, pieces: list[dict[str, Any]], **extra: Any) -> None:
    now = time.time()
    data = {
        "pid": os.getpid(),
        "started": now - 200,
        "finished": None,
        "regions": ["us-east-1", "eu-west-1"],
        "expected_total": 800.0,
        "expected_by": {"regions": 500.0, "s3": 800.0},
        "expected_source": "the cold build measured in docs/sandbox.md",
        "log": "/srv/gpucloud/var/log/bring-up",
        "pieces": pieces,
        **extra,
    }
    bs.write(path, data)


def piece(name: str, label: str, state: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "label": label, "state": state, **extra}


def building(now: float) -> list[dict[str, Any]]:
    return [
        piece("kubernetes", "Kubernetes v1.35.4", "running", started=now - 200, expected=346.0),
        piece("etcd", "etcd v3.6.16", "done", started=now - 200, finished=now - 100),
        piece("weed", "SeaweedFS", "cached"),
        piece("regions", "connect the regions", "waiting"),
        piece("s3", "start object storage", "waiting"),
    ]


@pytest.fixture
def status_file(settings: Any, tmp_path: Path) -> Path:
    settings.BUILD_STATUS_FILE = str(tmp_path / "build-status.json")
    return Path(settings.BUILD_STATUS_FILE)


def signed_in(staff: bool = False) -> Client:
    client = Client()
    if staff:  # staff pass their second factor first (mandatory)
        login_staff(client, UserFactory(is_staff=True))
    else:
        client.force_login(UserFactory())
    return client


def test_while_building_signed_in_users_see_progress_and_it_polls(status_file: Path) -> None:
    write_status(status_file, building(time.time()))

    page = parse(signed_in().get(HOME).content.decode())

    banner = page.by_id("build-banner")
    assert banner.attrs["hx-get"] == POLL and banner.attrs["hx-trigger"] == "every 5s"
    section = banner.find("section")
    assert section.attrs["data-state"] == "building" and "banner-info" in section.classes
    text = section.text
    assert "still setting up its local regions and object storage: Kubernetes v1.35.4." in text
    assert "3 min 20 s so far, about 10 min left: the last measured build took 13 min" in text
    assert "Launches are accepted and wait as pending until their region's cluster is up" in text
    pieces = {li.attrs["data-piece"]: li.text for li in section.find_all("li")}
    assert pieces["kubernetes"] == "Kubernetes v1.35.4: in progress, 3 min 20 s of about 5 min 46 s"
    assert pieces["etcd"] == "etcd v3.6.16: done in 1 min 40 s"
    assert pieces["weed"] == "SeaweedFS: already built"
    assert pieces["regions"] == "connect the regions: waiting"
    assert "Logs:" not in text  # the log path is for staff


def test_staff_also_see_where_the_logs_are(status_file: Path) -> None:
    write_status(status_file, building(time.time()))
    text = parse(signed_in(staff=True).get(HOME).content.decode()).by_id("build-banner").text
    assert "Logs: /srv/gpucloud/var/log/bring-up" in text


def test_a_failure_is_shown_and_no_longer_polled(status_file: Path) -> None:
    now = time.time()
    pieces = building(now)
    pieces[0] = piece(
        "kubernetes", "Kubernetes v1.35.4", "failed", started=now - 200, finished=now - 10, error="exited 1"
    )
    write_status(status_file, pieces, finished=now - 5)

    banner = parse(signed_in().get(HOME).content.decode()).by_id("build-banner")

    assert "hx-get" not in banner.attrs
    section = banner.find("section")
    assert section.attrs["data-state"] == "failed" and "banner-bad" in section.classes
    assert "Setting up this machine failed: Kubernetes v1.35.4 did not succeed." in section.text
    assert "run `make run` again" in section.text
    assert "Kubernetes v1.35.4: failed after 3 min 10 s: exited 1" in section.text


def test_a_bring_up_whose_process_is_gone_says_it_stopped(status_file: Path) -> None:
    write_status(status_file, building(time.time()), pid=2**22 + 12345)  # above pid_max: no such process
    section = parse(signed_in().get(HOME).content.decode()).by_id("build-banner").find("section")
    assert section.attrs["data-state"] == "interrupted"
    assert "stopped before it finished" in section.text


def test_once_everything_is_up_there_is_no_banner_and_the_poll_removes_it(status_file: Path) -> None:
    now = time.time()
    done = [{**p, "state": "done"} for p in building(now)]
    write_status(status_file, done, finished=now)
    client = signed_in()

    assert 'id="build-banner"' not in client.get(HOME).content.decode()
    poll = client.get(POLL)
    assert poll.status_code == 200 and poll.content == b""  # HTMX swaps the banner out for nothing


def test_the_poll_answers_the_banner_while_building(status_file: Path) -> None:
    write_status(status_file, building(time.time()))
    response = signed_in().get(POLL)
    assert response.status_code == 200
    section = parse(response.content.decode()).by_id("build-banner").find("section")
    assert section.attrs["data-state"] == "building"


def test_anonymous_visitors_see_nothing(status_file: Path, client: Client) -> None:
    write_status(status_file, building(time.time()))
    login = client.get(reverse("login"))
    assert login.status_code == 200 and 'id="build-banner"' not in login.content.decode()
    assert client.get(POLL).status_code == 302  # to the log-in page


def test_no_status_file_no_banner(settings: Any) -> None:
    settings.BUILD_STATUS_FILE = None
    client = signed_in()
    assert 'id="build-banner"' not in client.get(HOME).content.decode()
    assert client.get(POLL).content == b""


def test_a_broken_status_file_is_no_banner_and_no_error(status_file: Path) -> None:
    status_file.write_text(json.dumps({"schema": 1, "started": "soon"}))
    response = signed_in().get(HOME)
    assert response.status_code == 200 and 'id="build-banner"' not in response.content.decode()
