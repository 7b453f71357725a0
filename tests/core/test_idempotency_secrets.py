"""A secret shown once (an API token) must not be kept in the idempotency record for replays."""

from django.db import connection

from apps.core.models import IdempotencyKey


def test_token_secret_not_stored_and_replay_hides_it(owner):
    client = owner.token_client()
    body = {"name": "ci", "scopes": ["instances:read"]}
    first = client.post(owner.url("/tokens"), body, format="json", HTTP_IDEMPOTENCY_KEY="tok-1")
    assert first.status_code == 201, first.content
    secret = first.json()["token"]
    assert secret.startswith("gpc_")

    with connection.cursor() as cursor:
        cursor.execute("SELECT response_body::text FROM core_idempotencykey")
        stored = " ".join(row[0] for row in cursor.fetchall())
    assert secret not in stored
    assert IdempotencyKey.objects.get(key="tok-1").response_body["token"] is None

    replay = client.post(owner.url("/tokens"), body, format="json", HTTP_IDEMPOTENCY_KEY="tok-1")
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    assert replay.json()["token"] is None
