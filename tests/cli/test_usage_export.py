"""`gpucloud usage --csv` / `--lines --json` / `-o FILE`: the ledger lines of a range, streamed from the API
to stdout or to a file (whole or not at all), against the live server; `usage --json` is still the
report."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from apps.billing import exports
from gpucloud_cli import Client
from gpucloud_cli.client import TransportError
from tests.billing.wallet_helpers import usage
from tests.cli.conftest import Cli
from tests.conftest import Actor

pytestmark = pytest.mark.django_db(transaction=True)

OCTOBER = ("--from", "2026-10-01", "--to", "2026-11-01")


@pytest.fixture
def october(funded: Actor, make_actor) -> Actor:
    """Two rows of the funded tenant in October, one just after it, and another tenant's row in it."""
    usage(funded.tenant, "0.041500", end=datetime(2026, 10, 2, 0, 1, tzinfo=UTC))
    usage(funded.tenant, "1.250000", end=datetime(2026, 10, 31, 23, 59, tzinfo=UTC), seconds=3600)
    usage(funded.tenant, "0.500000", end=datetime(2026, 11, 1, 0, 1, tzinfo=UTC))
    usage(make_actor().tenant, "9.000000", end=datetime(2026, 10, 5, tzinfo=UTC))
    return funded


def test_csv_to_stdout(cli: Cli, october: Actor) -> None:
    cli.login(october)

    result = cli.ok("usage", *OCTOBER, "--csv")

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == list(exports.COLUMNS)
    assert [(r["period_start"], r["amount"]) for r in rows] == [
        ("2026-10-02T00:00:00Z", "0.041500"),
        ("2026-10-31T22:59:00Z", "1.250000"),
    ]
    assert result.stderr == ""


def test_json_lines_to_stdout_and_the_report_unchanged(cli: Cli, october: Actor) -> None:
    cli.login(october)

    lines = cli.ok("usage", *OCTOBER, "--lines", "--json").json()
    report = cli.ok("usage", *OCTOBER, "--group-by", "day", "--json").json()

    assert [line["amount"] for line in lines] == ["0.041500", "1.250000"]
    assert lines[0]["quantity_seconds"] == 60 and lines[0]["unit_price_per_hour"] == "1.0000"
    assert report["total"] == "1.291500" and [row["key"] for row in report["results"]] == [
        "2026-10-02",
        "2026-10-31",
    ]


def test_output_file(cli: Cli, october: Actor, tmp_path: Path) -> None:
    cli.login(october)
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "october.json"

    result = cli.ok("usage", *OCTOBER, "--json", "-o", str(target))

    assert result.stdout == ""
    assert result.stderr.startswith("Wrote ") and result.stderr.rstrip().endswith(f"of JSON to {target}.")
    assert '"amount":"1.250000"' in target.read_text()
    assert sorted(p.name for p in folder.iterdir()) == ["october.json"]  # no partial file left behind

    cli.ok("usage", *OCTOBER, "-o", str(folder / "october.csv"))  # CSV without --json
    assert (folder / "october.csv").read_text().startswith("id,resource_type,")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--csv", "--json"), "error: --csv and --json: choose one format"),
        (("--csv", "--group-by", "day"), "error: --group-by groups the usage report"),
    ],
)
def test_options_that_do_not_go_together_exit_2(cli: Cli, october: Actor, extra, message) -> None:
    cli.login(october)

    result = cli("usage", *OCTOBER, *extra)

    assert result.returncode == 2, str(result)
    assert result.stderr.startswith(message) and result.stdout == ""


def test_a_bad_date_names_the_field_and_writes_no_file(cli: Cli, october: Actor, tmp_path: Path) -> None:
    cli.login(october)
    folder = tmp_path / "out"
    folder.mkdir()

    result = cli("usage", "--from", "yesterday", "--csv", "-o", str(folder / "out.csv"))

    assert result.returncode == 1, str(result)
    assert "\n  from: Datetime has wrong format." in result.stderr
    assert list(folder.iterdir()) == []


# --- a download cut off ----------------------------------------------------------------------------------


@pytest.fixture
def cut_off() -> Iterator[str]:
    """A server that promises 10,000 bytes of CSV and sends 20 before closing the connection."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", "10000")
            self.end_headers()
            self.wfile.write(b"id,resource_type,res")
            self.close_connection = True

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_download_cut_off_is_an_error_and_leaves_no_file(cli: Cli, cut_off: str, tmp_path: Path) -> None:
    out = io.BytesIO()
    with pytest.raises(TransportError, match="cut off after 20 bytes"):
        Client(cut_off, "gpc_test", tenant="acme", max_retries=0).usage_export(out)
    assert out.getvalue() == b"id,resource_type,res"

    folder = tmp_path / "out"
    folder.mkdir()
    env = {"GPUCLOUD_API_URL": cut_off, "GPUCLOUD_TOKEN": "gpc_test", "GPUCLOUD_TENANT": "acme"}
    result = cli("usage", "--csv", "-o", str(folder / "usage.csv"), **env)

    assert result.returncode == 1, str(result)
    assert result.stderr.startswith("error: the download was cut off after 20 bytes")
    assert list(folder.iterdir()) == []
