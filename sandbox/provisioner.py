#!/usr/bin/env python3
"""The sandbox's simulated storage provisioner: a test double for a CSI driver, which cannot run here (kwok
nodes have no kubelet to mount anything). One process per region, started and stopped by sandbox.sh.

For PersistentVolumeClaims of its StorageClass (provisioner name sandbox.gpucloud.io/hostpath) it does what
a CSI driver's external-provisioner and external-resizer sidecars do:

- a pending claim gets a new PersistentVolume (hostPath under the sandbox directory, pre-bound through
  claimRef); kube-controller-manager's binder then binds the two;
- a bound claim asking for more than its capacity is grown: the PV's capacity, then the claim's
  status.capacity (what a real resizer reports once the filesystem is expanded);
- a Released PV of ours (its claim deleted) is deleted with its directory (reclaim policy Delete).

It polls (every --interval seconds) rather than watching: simple, and restarts lose nothing.

    provisioner.py --kubeconfig FILE --storage-class NAME --data-dir DIR [--interval 1] [--once]

Runs with a python that has the kubernetes client (the project's virtualenv: GPUCLOUD_SANDBOX_PYTHON).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.utils import parse_quantity

PROVISIONER = "sandbox.gpucloud.io/hostpath"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
TIMEOUT = (5, 30)
RUN_AS_GROUP = 1000  # apps/operator/manifests.py RUN_AS: the group (fsGroup) of every instance pod

log = logging.getLogger("provisioner")


def pv_name(claim: Any) -> str:
    return f"pvc-{claim.metadata.uid}"


class Provisioner:
    def __init__(self, api: client.ApiClient, storage_class: str, data_dir: Path):
        self.core = client.CoreV1Api(api)
        self.storage_class = storage_class
        self.data_dir = data_dir

    def ours(self, claim: Any) -> bool:
        return claim.spec.storage_class_name == self.storage_class

    def pass_once(self) -> None:
        claims = self.core.list_persistent_volume_claim_for_all_namespaces(_request_timeout=TIMEOUT).items
        for claim in claims:
            if not self.ours(claim) or claim.metadata.deletion_timestamp:
                continue
            if claim.status.phase == "Pending" and not claim.spec.volume_name:
                self.provision(claim)
            elif claim.status.phase == "Bound":
                self.expand(claim)
        for volume in self.core.list_persistent_volume(_request_timeout=TIMEOUT).items:
            mine = (volume.metadata.annotations or {}).get(PROVISIONED_BY) == PROVISIONER
            if mine and volume.status.phase in ("Released", "Failed"):
                self.reclaim(volume)

    def provision(self, claim: Any) -> None:
        name = pv_name(claim)
        path = self.data_dir / name
        path.mkdir(parents=True, exist_ok=True)
        # The kubelet applies a pod's fsGroup to the volume types that support it, not to hostPath: give the
        # directory the group the instance pods run with (RUN_AS_GROUP) and setgid, as fsGroup would, so an
        # instance on a real node can write to its volume.
        os.chown(path, -1, RUN_AS_GROUP)
        path.chmod(0o2775)
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {PROVISIONED_BY: PROVISIONER},
                "labels": {"gpucloud.io/sandbox-provisioner": "true"},
            },
            "spec": {
                "capacity": {"storage": claim.spec.resources.requests["storage"]},
                "accessModes": list(claim.spec.access_modes),
                "volumeMode": claim.spec.volume_mode or "Filesystem",
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": self.storage_class,
                "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": claim.metadata.namespace,
                    "name": claim.metadata.name,
                    "uid": claim.metadata.uid,
                },
            },
        }
        try:
            self.core.create_persistent_volume(body, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status != 409:  # made by an earlier pass: the binder will catch up
                raise
            return
        log.info("provisioned %s for %s/%s", name, claim.metadata.namespace, claim.metadata.name)

    def expand(self, claim: Any) -> None:
        wanted = claim.spec.resources.requests.get("storage")
        have = (claim.status.capacity or {}).get("storage")
        if not wanted or (have and parse_quantity(have) >= parse_quantity(wanted)):
            return
        if claim.spec.volume_name:
            self.core.patch_persistent_volume(
                claim.spec.volume_name, {"spec": {"capacity": {"storage": wanted}}}, _request_timeout=TIMEOUT
            )
        status = {
            "capacity": {"storage": wanted},
            "allocatedResources": {"storage": wanted},
            "allocatedResourceStatuses": None,
            "conditions": None,
        }
        self.core.patch_namespaced_persistent_volume_claim_status(
            claim.metadata.name, claim.metadata.namespace, {"status": status}, _request_timeout=TIMEOUT
        )
        log.info("expanded %s/%s to %s", claim.metadata.namespace, claim.metadata.name, wanted)

    def reclaim(self, volume: Any) -> None:
        try:
            self.core.delete_persistent_volume(volume.metadata.name, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status != 404:
                raise
        host_path = (volume.spec.host_path.path if volume.spec.host_path else "") or ""
        if host_path and Path(host_path).parent == self.data_dir:
            shutil.rmtree(host_path, ignore_errors=True)
        log.info("deleted %s (its claim is gone)", volume.metadata.name)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--storage-class", required=True)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--once", action="store_true", help="one pass, then exit (for debugging)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    provisioner = Provisioner(
        config.new_client_from_config(config_file=args.kubeconfig), args.storage_class, args.data_dir
    )
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("serving storage class %s, volumes under %s", args.storage_class, args.data_dir)
    while not stopping:
        try:
            provisioner.pass_once()
        except Exception as exc:  # the apiserver restarting, a conflict: the next pass tries again
            log.warning("pass failed: %s", exc)
        if args.once:
            break
        time.sleep(args.interval)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
