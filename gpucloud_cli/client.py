"""A thin Python client of the gpucloud REST API (standard library only).

    from gpucloud_cli import Client
    api = Client("https://gpucloud.example", "gpc_...")
    instance = api.launch(name="train-1", region="us-east-1", instance_type="gpu-h100x1", image="pytorch")
    api.wait(instance["id"], "running")

Every refusal raises ApiError with the API's code, message, field errors and details. Connection errors, 5xx
and 429 answers are retried with exponential backoff. Each create and each lifecycle action (stop, start,
restart, terminate) carries one Idempotency-Key for all its attempts, so a launch whose response was lost is
replayed by the server instead of making a second instance, and a stop whose response was lost gets the
original answer instead of a 409. Other deletes carry none: the API does not honour one there.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, cast

from gpucloud_cli import models

__all__ = [
    "ApiError",
    "Client",
    "ClusterEnded",
    "GpucloudError",
    "InstanceEnded",
    "TransportError",
    "WaitTimeout",
]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF = 30.0
PAGE = 100
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
FINAL_STATES = frozenset({"failed", "terminated"})
# Seconds the server holds one waiting request (its most is 60); below the client's own read timeout.
LONG_POLL_SECONDS = 30
DOWNLOAD_CHUNK = 64 * 1024
FOLLOW_TAIL = 10_000  # the API's most: a poll two seconds after the last one rarely has more new lines


class GpucloudError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ApiError(GpucloudError):
    """The API refused the request: {"error": {"code", "message", "fields", "details"}} and the status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, list[str]] | None = None,
        details: dict[str, Any] | None = None,
        request_id: str = "",
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.fields = fields or {}
        self.details = details
        self.request_id = request_id
        self.attempts = 1  # how many times the call was sent before this answer

    @classmethod
    def from_response(cls, status: int, body: bytes, headers: Any) -> ApiError:
        request_id = (headers.get("X-Request-ID") if headers is not None else None) or ""
        try:
            error = json.loads(body or b"{}").get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        if not isinstance(error, dict) or "code" not in error:
            text = body.decode(errors="replace").strip()[:200] if body else ""
            message = f"HTTP {status}" + (f": {text}" if text and not text.startswith("<") else "")
            return cls(status, f"http_{status}", message, request_id=request_id)
        fields = {
            str(k): [str(m) for m in (v if isinstance(v, list) else [v])]
            for k, v in (error.get("fields") or {}).items()
        }
        return cls(
            status,
            str(error.get("code")),
            str(error.get("message") or f"HTTP {status}"),
            fields,
            error.get("details"),
            request_id,
        )

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.message!r})"


class TransportError(GpucloudError):
    """The server could not be reached (after the retries)."""


class WaitTimeout(GpucloudError):
    def __init__(self, message: str, instance: models.Instance | None = None):
        super().__init__(message)
        self.instance = instance


class InstanceEnded(GpucloudError):
    """A wait can no longer succeed: the instance failed or was terminated."""

    def __init__(self, message: str, instance: models.Instance):
        super().__init__(message)
        self.instance = instance


class ClusterEnded(GpucloudError):
    """A wait for a cluster can no longer succeed: it failed or was terminated."""

    def __init__(self, message: str, cluster: models.Cluster):
        super().__init__(message)
        self.cluster = cluster


def new_idempotency_key() -> str:
    return f"gpucloud-cli-{uuid.uuid4()}"


def is_uuid(value: str) -> bool:
    return bool(UUID_RE.match(value))


class Client:
    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        tenant: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = "gpucloud-cli",
    ):
        self.api_url = api_url.rstrip("/")
        self.token = token
        self._tenant = tenant or None
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.sleep = sleep
        self.user_agent = user_agent

    # --- transport ----------------------------------------------------------------------------------------

    def _url(self, path: str, params: dict[str, Any] | None) -> str:
        url = f"{self.api_url}/api/v1/{path.lstrip('/')}"
        query = [(k, _param(v)) for k, v in (params or {}).items() if v is not None]
        query = [(k, item) for k, v in query for item in (v if isinstance(v, list) else [v])]
        return f"{url}?{urllib.parse.urlencode(query)}" if query else url

    def _send(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes, Any]:
        request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read(), exc.headers

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        idempotency_key: str | None = None,
    ) -> tuple[Any, int]:
        """One logical call, retried; returns (decoded JSON or None, number of attempts)."""
        url = self._url(path, params)
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "User-Agent": self.user_agent,
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        attempt = 0
        while True:
            attempt += 1
            try:
                status, raw, response_headers = self._send(method, url, data, headers)
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, dropped, timed out
                if attempt > self.max_retries:
                    reason = getattr(exc, "reason", None) or exc
                    raise TransportError(f"cannot reach {self.api_url}: {reason}") from exc
                self.sleep(self._delay(attempt, None))
                continue
            if status in RETRY_STATUSES and attempt <= self.max_retries:
                self.sleep(self._delay(attempt, response_headers.get("Retry-After")))
                continue
            if status >= 400:
                error = ApiError.from_response(status, raw, response_headers)
                error.attempts = attempt
                raise error
            if not raw:
                return None, attempt
            try:
                return json.loads(raw), attempt
            except ValueError as exc:
                raise GpucloudError(f"the server sent a response that is not JSON (HTTP {status})") from exc

    def _download(self, path: str, params: dict[str, Any], out: BinaryIO) -> int:
        """GET a file the API streams, copied to `out` a piece at a time (never held whole). Refusals and
        failures before the first byte are handled and retried as in call(); a stream cut off later raises
        TransportError, since what `out` already holds cannot be taken back."""
        url = self._url(path, params)
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "*/*", "User-Agent": self.user_agent}
        attempt = 0
        while True:
            attempt += 1
            request = urllib.request.Request(url, method="GET", headers=headers)  # noqa: S310
            try:
                response = urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310
            except urllib.error.HTTPError as exc:
                with exc:
                    status, raw, response_headers = exc.code, exc.read(), exc.headers
                if status in RETRY_STATUSES and attempt <= self.max_retries:
                    self.sleep(self._delay(attempt, response_headers.get("Retry-After")))
                    continue
                error = ApiError.from_response(status, raw, response_headers)
                error.attempts = attempt
                raise error from None
            except (OSError, http.client.HTTPException) as exc:
                if attempt > self.max_retries:
                    reason = getattr(exc, "reason", None) or exc
                    raise TransportError(f"cannot reach {self.api_url}: {reason}") from exc
                self.sleep(self._delay(attempt, None))
                continue
            written = 0
            with response:
                try:
                    while chunk := response.read(DOWNLOAD_CHUNK):
                        out.write(chunk)
                        written += len(chunk)
                except (OSError, http.client.HTTPException) as exc:
                    raise TransportError(f"the download was cut off after {written} bytes: {exc}") from exc
                # read() ends quietly when the connection closes before a Content-Length is reached (a
                # chunked body raises instead): what it still expected says the file is incomplete.
                if response.length:
                    raise TransportError(
                        f"the download was cut off after {written} bytes ({response.length} missing)"
                    )
            return written

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), MAX_BACKOFF)
        return min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.call(method, path, **kwargs)[0]

    def _list(self, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Every page of a paginated list, following each page's `next` link: a cursor on the lists that page
        by position (no row missed or repeated when rows are added between pages), an offset on the others."""
        items: list[Any] = []
        query: dict[str, Any] = {**(params or {}), "limit": PAGE}
        while True:
            page = self.request("GET", path, params=query)
            if not isinstance(page, dict) or "results" not in page:
                return list(page or [])
            items.extend(page["results"])
            if not page.get("next") or not page["results"]:
                return items
            # The link carries the filters, the limit and the position; the path stays ours (the server
            # may sit behind a proxy that rewrites its host).
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(page["next"]).query, keep_blank_values=True)

    def _create(self, path: str, body: Any, idempotency_key: str | None = None) -> Any:
        return self.request("POST", path, body=body, idempotency_key=idempotency_key or new_idempotency_key())

    # --- identity -----------------------------------------------------------------------------------------

    def me(self) -> models.Me:
        return cast(models.Me, self.request("GET", "me"))

    @property
    def tenant(self) -> str:
        """The tenant slug: given, or the one the token belongs to."""
        if self._tenant is None:
            me = self.me()
            token: dict[str, Any] = dict(me.get("token") or {})
            memberships = me.get("memberships") or []
            if token.get("tenant"):
                self._tenant = str(token["tenant"])
            elif len(memberships) == 1:
                self._tenant = memberships[0]["tenant"]
            else:
                raise GpucloudError("cannot tell which tenant to use: pass a tenant (--tenant)")
        return self._tenant

    def _t(self, suffix: str) -> str:
        return f"tenants/{self.tenant}/{suffix}"

    # --- catalog ------------------------------------------------------------------------------------------

    def regions(self) -> list[models.Region]:
        return self._list("regions")

    def gpu_types(self) -> list[models.GpuType]:
        return self._list("gpu-types")

    def instance_types(
        self,
        *,
        gpu_type: str | None = None,
        region: str | None = None,
        available: bool | None = None,
        min_gpus: int | None = None,
    ) -> list[models.InstanceType]:
        params = {"gpu_type": gpu_type, "region": region, "available": available, "min_gpus": min_gpus}
        return self._list("instance-types", params)

    def images(self) -> list[models.Image]:
        return self._list("images")

    # --- instances ----------------------------------------------------------------------------------------

    def instances(
        self,
        *,
        state: str | list[str] | None = None,
        region: str | None = None,
        instance_type: str | None = None,
        name: str | None = None,
        include_terminated: bool = False,
    ) -> list[models.Instance]:
        params = {
            "state": state,
            "region": region,
            "instance_type": instance_type,
            "name": name,
            "include_terminated": True if include_terminated else None,
        }
        return self._list(self._t("instances"), params)

    def instance(
        self, instance_id: str, *, wait: Iterable[str] | None = None, timeout: int | None = None
    ) -> models.Instance:
        """The instance; with `wait`, once it is in one of those states, failed or terminated, or after
        `timeout` seconds (1 to 60), as it is then (docs/api.md "Waiting for a state")."""
        params = {"wait": ",".join(sorted(wait)), "timeout": timeout} if wait else None
        return cast(models.Instance, self.request("GET", self._t(f"instances/{instance_id}"), params=params))

    def launch(
        self,
        *,
        instance_type: str,
        region: str,
        image: str,
        name: str | None = None,
        ssh_key_ids: Iterable[str] = (),
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        auto_stop_after: int | None = None,
        max_runtime: int | None = None,
        volumes: list[dict[str, str]] | None = None,
        tags: dict[str, str] | None = None,
        zone: str | None = None,
        idempotency_key: str | None = None,
    ) -> models.Instance:
        body: dict[str, Any] = {"instance_type": instance_type, "region": region, "image": image}
        optional = {
            "name": name,
            "ssh_key_ids": list(ssh_key_ids) or None,
            "env": env or None,
            "command": command or None,
            "auto_stop_after": auto_stop_after,
            "max_runtime": max_runtime,
            "volumes": volumes or None,
            "tags": tags or None,
            "zone": zone or None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return cast(models.Instance, self._create(self._t("instances"), body, idempotency_key))

    def instance_tags(self, instance_id: str, changes: dict[str, str | None]) -> models.Instance:
        """Set (a string) or remove (None) tags; the others are kept (a merge patch)."""
        path = self._t(f"instances/{instance_id}")
        return cast(models.Instance, self.request("PATCH", path, body={"tags": changes}))

    def stop(self, instance_id: str, *, idempotency_key: str | None = None) -> models.Instance:
        return self._action(instance_id, "stop", idempotency_key=idempotency_key)

    def start(self, instance_id: str, *, idempotency_key: str | None = None) -> models.Instance:
        return self._action(instance_id, "start", idempotency_key=idempotency_key)

    def restart(self, instance_id: str, *, idempotency_key: str | None = None) -> models.Instance:
        return self._action(instance_id, "restart", idempotency_key=idempotency_key)

    def terminate(
        self, instance_id: str, *, delete_volumes: bool = False, idempotency_key: str | None = None
    ) -> models.Instance:
        params = {"delete_volumes": "true"} if delete_volumes else None
        return self._action(instance_id, "terminate", params=params, idempotency_key=idempotency_key)

    def _action(
        self,
        instance_id: str,
        action: str,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> models.Instance:
        """One key for all the attempts of this call: a retry after a lost answer (the action was applied)
        gets that answer replayed, where it would otherwise be refused as a 409 invalid_state."""
        path = self._t(f"instances/{instance_id}")
        method = "DELETE" if action == "terminate" else "POST"
        if action != "terminate":
            path = f"{path}/{action}"
        key = idempotency_key or new_idempotency_key()
        return cast(models.Instance, self.request(method, path, params=params, idempotency_key=key))

    def instance_logs(
        self,
        instance_id: str,
        *,
        tail: int | None = None,
        since: int | None = None,
        since_time: str | None = None,
        previous: bool = False,
        timestamps: bool = False,
    ) -> models.InstanceLog:
        """The container's last `tail` lines (the server's default 200), of the last `since` seconds or from
        `since_time` (RFC 3339, inclusive); `previous`: the crashed container's. No log is not an error:
        `available` is false and `reason` says why."""
        params = {
            "tail": tail,
            "since": since,
            "since_time": since_time,
            "previous": True if previous else None,
            "timestamps": True if timestamps else None,
        }
        return cast(
            models.InstanceLog, self.request("GET", self._t(f"instances/{instance_id}/logs"), params=params)
        )

    def follow_logs(
        self,
        instance_id: str,
        *,
        tail: int | None = None,
        since: int | None = None,
        previous: bool = False,
        interval: float = 2.0,
        on_unavailable: Callable[[models.InstanceLog], None] | None = None,
    ) -> Iterator[tuple[str, str]]:
        """(timestamp, line) for each line of the log, then for each new one, polling every `interval`
        seconds until the instance is terminated (or the caller stops iterating). Each poll asks from the
        last timestamp seen, which the server includes again: lines already yielded are dropped.
        `on_unavailable` hears each change of the reason there is no log (no pod yet, terminated ...)."""
        log = self.instance_logs(instance_id, tail=tail, since=since, previous=previous, timestamps=True)
        last: str | None = None
        at_last: list[str] = []  # the lines already yielded that carry the `last` timestamp
        reason = None
        while True:
            if log["reason"] != reason and log["reason"] is not None and on_unavailable is not None:
                on_unavailable(log)
            reason = log["reason"]
            unmatched = list(at_last)
            fresh = [line for line in log["lines"] if _is_new(line, last, unmatched)]
            for line in fresh:
                stamp, _, text = line.partition(" ")
                yield stamp, text
            if fresh and log["last_timestamp"]:
                last = log["last_timestamp"]
                at_last = [line for line in log["lines"] if line.partition(" ")[0] == last]
            if log["reason"] == "terminated":
                return
            self.sleep(interval)
            if last is None:  # nothing yet (no pod, not started): ask as the first time
                log = self.instance_logs(
                    instance_id, tail=tail, since=since, previous=previous, timestamps=True
                )
            else:
                log = self.instance_logs(
                    instance_id, tail=FOLLOW_TAIL, since_time=last, previous=previous, timestamps=True
                )

    def instance_events(self, instance_id: str) -> list[models.InstanceEvent]:
        return self._list(self._t(f"instances/{instance_id}/events"))

    def wait(
        self,
        instance_id: str,
        states: str | Iterable[str],
        *,
        timeout: float = 900.0,
        interval: float = 2.0,
        on_poll: Callable[[models.Instance], None] | None = None,
    ) -> models.Instance:
        """Wait until the instance is in one of `states`; WaitTimeout after `timeout` seconds, InstanceEnded
        when it failed or was terminated (unless that is what is awaited). Each request is a long-poll
        (`?wait=...&timeout=...`, docs/api.md "Waiting for a state") that the server answers as soon as the
        state changes; `interval` paces the requests only against a server that does not hold them (one that
        answers at once without a change, or refuses with 503 too_many_waiters)."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        instance = self.instance(instance_id)
        while True:
            if on_poll is not None:
                on_poll(instance)
            state = instance["state"]
            if state in wanted:
                return instance
            if state in FINAL_STATES:
                why = f": {instance['failure_reason']}" if instance.get("failure_reason") else ""
                message = instance.get("state_message") or ""
                raise InstanceEnded(
                    f"instance {instance['name']} is {state}{why}" + (f" ({message})" if message else ""),
                    instance,
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"timed out after {timeout:g}s waiting for {instance['name']} to be "
                    f"{' or '.join(sorted(wanted))}; it is {state}",
                    instance,
                )
            asked = time.monotonic()
            hold = max(1, min(LONG_POLL_SECONDS, math.ceil(left), int(self.timeout) - 5))
            try:
                instance = self.instance(instance_id, wait=wanted, timeout=hold)
            except ApiError as exc:
                if exc.status != 503 or exc.code != "too_many_waiters":
                    raise
                instance = self.instance(instance_id)
                self.sleep(min(interval, left))
                continue
            if instance["state"] == state and time.monotonic() - asked < min(1.0, hold):
                self.sleep(min(interval, max(0.0, deadline - time.monotonic())))  # not held: pace

    # --- clusters -----------------------------------------------------------------------------------------

    def clusters(
        self,
        *,
        state: str | list[str] | None = None,
        region: str | None = None,
        instance_type: str | None = None,
        name: str | None = None,
        include_terminated: bool = False,
    ) -> list[models.Cluster]:
        params = {
            "state": state,
            "region": region,
            "instance_type": instance_type,
            "name": name,
            "include_terminated": True if include_terminated else None,
        }
        return self._list(self._t("clusters"), params)

    def cluster(self, cluster_id: str) -> models.Cluster:
        return cast(models.Cluster, self.request("GET", self._t(f"clusters/{cluster_id}")))

    def cluster_create(
        self,
        *,
        instance_type: str,
        region: str,
        image: str,
        node_count: int,
        name: str | None = None,
        placement: str | None = None,
        on_node_failure: str | None = None,
        ssh_key_ids: Iterable[str] = (),
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        auto_stop_after: int | None = None,
        max_runtime: int | None = None,
        volumes: list[dict[str, str]] | None = None,
        tags: dict[str, str] | None = None,
        zone: str | None = None,
        idempotency_key: str | None = None,
    ) -> models.Cluster:
        body: dict[str, Any] = {
            "instance_type": instance_type,
            "region": region,
            "image": image,
            "node_count": node_count,
        }
        optional = {
            "name": name,
            "placement": placement,
            "on_node_failure": on_node_failure,
            "ssh_key_ids": list(ssh_key_ids) or None,
            "env": env or None,
            "command": command or None,
            "volumes": volumes or None,
            "auto_stop_after": auto_stop_after,
            "max_runtime": max_runtime,
            "tags": tags or None,
            "zone": zone or None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return cast(models.Cluster, self._create(self._t("clusters"), body, idempotency_key))

    def cluster_tags(self, cluster_id: str, changes: dict[str, str | None]) -> models.Cluster:
        """Set (a string) or remove (None) the cluster's tags; its nodes follow."""
        path = self._t(f"clusters/{cluster_id}")
        return cast(models.Cluster, self.request("PATCH", path, body={"tags": changes}))

    def cluster_stop(self, cluster_id: str, *, idempotency_key: str | None = None) -> models.Cluster:
        return self._cluster_action(cluster_id, "stop", idempotency_key)

    def cluster_start(self, cluster_id: str, *, idempotency_key: str | None = None) -> models.Cluster:
        return self._cluster_action(cluster_id, "start", idempotency_key)

    def cluster_terminate(self, cluster_id: str, *, idempotency_key: str | None = None) -> models.Cluster:
        return self._cluster_action(cluster_id, "terminate", idempotency_key)

    def _cluster_action(self, cluster_id: str, action: str, idempotency_key: str | None) -> models.Cluster:
        """One key for all the attempts of this call, as for an instance's actions (_action)."""
        path = self._t(f"clusters/{cluster_id}/{action}")
        key = idempotency_key or new_idempotency_key()
        return cast(models.Cluster, self.request("POST", path, idempotency_key=key))

    def cluster_events(self, cluster_id: str) -> list[models.ClusterEvent]:
        return self._list(self._t(f"clusters/{cluster_id}/events"))

    def wait_cluster(
        self,
        cluster_id: str,
        states: str | Iterable[str],
        *,
        timeout: float = 900.0,
        interval: float = 2.0,
        on_poll: Callable[[models.Cluster], None] | None = None,
    ) -> models.Cluster:
        """Wait until the cluster is in one of `states`, asking every `interval` seconds (a cluster has no
        long-poll: its state follows its nodes'); WaitTimeout after `timeout` seconds, ClusterEnded when it
        failed or was terminated (unless that is what is awaited)."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        while True:
            cluster = self.cluster(cluster_id)
            if on_poll is not None:
                on_poll(cluster)
            state = cluster["state"]
            if state in wanted:
                return cluster
            if state in FINAL_STATES:
                why = f": {cluster['failure_reason']}" if cluster.get("failure_reason") else ""
                message = cluster.get("state_message") or ""
                raise ClusterEnded(
                    f"cluster {cluster['name']} is {state}{why}" + (f" ({message})" if message else ""),
                    cluster,
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"timed out after {timeout:g}s waiting for cluster {cluster['name']} to be "
                    f"{' or '.join(sorted(wanted))}; it is {state}"
                )
            self.sleep(min(interval, left))

    # --- keys and tokens ----------------------------------------------------------------------------------

    def ssh_keys(self) -> list[models.SshKey]:
        return self._list(self._t("ssh-keys"))

    def ssh_key_add(self, *, name: str, public_key: str, private: bool = False) -> models.SshKey:
        body = {"name": name, "public_key": public_key, "private": private}
        return cast(models.SshKey, self._create(self._t("ssh-keys"), body))

    def ssh_key_delete(self, key_id: str) -> None:
        self.request("DELETE", self._t(f"ssh-keys/{key_id}"))

    def tokens(self) -> list[models.ApiToken]:
        return self._list(self._t("tokens"))

    def token_create(
        self, *, name: str, scopes: list[str], expires_at: str | None = None
    ) -> models.ApiTokenCreated:
        body: dict[str, Any] = {"name": name, "scopes": scopes}
        if expires_at:
            body["expires_at"] = expires_at
        return cast(models.ApiTokenCreated, self._create(self._t("tokens"), body))

    def token_revoke(self, token_id: str) -> None:
        self.request("DELETE", self._t(f"tokens/{token_id}"))

    # --- quota and billing --------------------------------------------------------------------------------

    def quota(self) -> models.QuotaOverview:
        return cast(models.QuotaOverview, self.request("GET", self._t("quotas")))

    def usage(
        self,
        *,
        start: str | None = None,
        end: str | None = None,
        group_by: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> models.UsageReport:
        """group_by: day, instance, instance_type or tag:<key>; tags: only usage carrying all of them."""
        params: dict[str, Any] = {"from": start, "to": end, "group_by": group_by}
        if tags:
            params["tag"] = [f"{key}:{value}" for key, value in tags.items()]
        return cast(models.UsageReport, self.request("GET", self._t("billing/usage"), params=params))

    def tag_budgets(self) -> list[models.TagBudget]:
        return self._list(self._t("billing/tag-budgets"))

    def tag_budget_create(self, *, key: str, value: str, monthly_amount: str) -> models.TagBudget:
        body = {"key": key, "value": value, "monthly_amount": monthly_amount}
        return cast(models.TagBudget, self._create(self._t("billing/tag-budgets"), body))

    def tag_budget_update(self, budget_id: str, *, monthly_amount: str) -> models.TagBudget:
        path = self._t(f"billing/tag-budgets/{budget_id}")
        return cast(models.TagBudget, self.request("PATCH", path, body={"monthly_amount": monthly_amount}))

    def tag_budget_delete(self, budget_id: str) -> None:
        self.request("DELETE", self._t(f"billing/tag-budgets/{budget_id}"))

    def usage_export(
        self, out: BinaryIO, *, start: str | None = None, end: str | None = None, fmt: str = "csv"
    ) -> int:
        """The ledger lines whose period starts within [start, end) as CSV or JSON (`fmt`), copied to `out`
        as they arrive (the API streams them); returns the bytes written."""
        params = {"from": start, "to": end, "format": fmt}
        return self._download(self._t("billing/usage/export"), params, out)

    def balance(self) -> models.Balance:
        return cast(models.Balance, self.request("GET", self._t("billing/balance")))

    # --- storage ------------------------------------------------------------------------------------------

    def volumes(self, *, region: str | None = None, name: str | None = None) -> list[models.Volume]:
        return self._list(self._t("volumes"), {"region": region, "name": name})

    def volume(self, volume_id: str) -> models.Volume:
        return cast(models.Volume, self.request("GET", self._t(f"volumes/{volume_id}")))

    def volume_create(
        self,
        *,
        name: str,
        region: str,
        size_gib: int,
        tags: dict[str, str] | None = None,
        zone: str | None = None,
    ) -> models.Volume:
        body: dict[str, Any] = {"name": name, "region": region, "size_gib": size_gib}
        if tags:
            body["tags"] = tags
        if zone:
            body["zone"] = zone
        return cast(models.Volume, self._create(self._t("volumes"), body))

    def volume_tags(self, volume_id: str, changes: dict[str, str | None]) -> models.Volume:
        path = self._t(f"volumes/{volume_id}")
        return cast(models.Volume, self.request("PATCH", path, body={"tags": changes}))

    def volume_resize(self, volume_id: str, *, size_gib: int) -> models.Volume:
        path = self._t(f"volumes/{volume_id}")
        return cast(models.Volume, self.request("PATCH", path, body={"size_gib": size_gib}))

    def volume_delete(self, volume_id: str) -> models.Volume:
        return cast(models.Volume, self.request("DELETE", self._t(f"volumes/{volume_id}")))

    def buckets(self) -> list[models.Bucket]:
        return self._list(self._t("buckets"))

    def bucket_create(self, *, name: str, tags: dict[str, str] | None = None) -> models.Bucket:
        body: dict[str, Any] = {"name": name, **({"tags": tags} if tags else {})}
        return cast(models.Bucket, self._create(self._t("buckets"), body))

    def bucket(self, name: str) -> models.Bucket:
        return cast(
            models.Bucket, self.request("GET", self._t(f"buckets/{urllib.parse.quote(name, safe='')}"))
        )

    def bucket_tags(self, name: str, changes: dict[str, str | None]) -> models.Bucket:
        path = self._t(f"buckets/{urllib.parse.quote(name, safe='')}")
        return cast(models.Bucket, self.request("PATCH", path, body={"tags": changes}))

    def bucket_delete(self, name: str, *, force: bool = False) -> None:
        params = {"force": "true"} if force else None
        self.request("DELETE", self._t(f"buckets/{urllib.parse.quote(name, safe='')}"), params=params)

    def access_keys(self) -> list[models.AccessKey]:
        return self._list(self._t("access-keys"))

    def access_key_create(self, *, name: str) -> models.AccessKeyCreated:
        return cast(models.AccessKeyCreated, self._create(self._t("access-keys"), {"name": name}))

    def access_key_revoke(self, key_id: str) -> None:
        self.request("DELETE", self._t(f"access-keys/{key_id}"))

    # --- names or ids -------------------------------------------------------------------------------------

    def find_instance(self, ref: str) -> models.Instance:
        if is_uuid(ref):
            return self.instance(ref)
        live = [i for i in self.instances(name=ref) if i["name"] == ref]
        if not live:
            live = [i for i in self.instances(name=ref, include_terminated=True) if i["name"] == ref]
        return _one("instance", ref, live)

    def find_cluster(self, ref: str) -> models.Cluster:
        if is_uuid(ref):
            return self.cluster(ref)
        live = [c for c in self.clusters(name=ref) if c["name"] == ref]
        if not live:
            live = [c for c in self.clusters(name=ref, include_terminated=True) if c["name"] == ref]
        return _one("cluster", ref, live)

    def find_ssh_key(self, ref: str) -> models.SshKey:
        return _one("SSH key", ref, _matching(self.ssh_keys(), ref, ("id", "name", "fingerprint")))

    def find_token(self, ref: str) -> models.ApiToken:
        return _one("token", ref, _matching(self.tokens(), ref, ("id", "name", "prefix")))

    def find_volume(self, ref: str) -> models.Volume:
        if is_uuid(ref):
            return self.volume(ref)
        return _one("volume", ref, _matching(self.volumes(name=ref), ref, ("name",)))

    def find_access_key(self, ref: str) -> models.AccessKey:
        keys = self.access_keys()
        return _one("access key", ref, _matching(keys, ref, ("id", "name", "access_key_id")))


def _stamp_key(stamp: str) -> tuple[str, int]:
    """Kubernetes' RFC 3339 timestamps compared in order whatever their number of fractional digits
    ("...05.5Z" is later than "...05.123Z", which string order gets wrong)."""
    head, _, rest = stamp.partition(".")
    digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
    return head.rstrip("Z"), int(digits.ljust(9, "0")[:9] or 0)


def _is_new(line: str, last: str | None, at_last: list[str]) -> bool:
    """Whether a stamped line comes after what was yielded: later than `last`, or at `last` and not one of
    the lines already yielded at that time (each of those matches once, for lines repeated at one time)."""
    if last is None:
        return True
    stamp = line.partition(" ")[0]
    if _stamp_key(stamp) != _stamp_key(last):
        return _stamp_key(stamp) > _stamp_key(last)
    if line in at_last:
        at_last.remove(line)
        return False
    return True


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


def _matching(items: list[Any], ref: str, keys: tuple[str, ...]) -> list[Any]:
    for key in keys:  # an id beats a name that happens to look like one
        found = [item for item in items if str(item.get(key)) == ref]
        if found:
            return found
    return []


def _one(kind: str, ref: str, items: list[Any]) -> Any:
    if not items:
        raise ApiError(404, "not_found", f"No {kind} named or with id '{ref}'.")
    if len(items) > 1:
        ids = ", ".join(str(item.get("id")) for item in items)
        raise ApiError(400, "ambiguous", f"Several {kind}s are named '{ref}'; use an id ({ids}).")
    return items[0]
