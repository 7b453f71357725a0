#!/usr/bin/env python3
"""Expands sandbox/fleet.yaml into kwok Node objects.

Runs with the system python3 (standard library plus PyYAML, which Debian ships as python3-yaml);
it does not need the project's virtualenv.

    fleet.py regions             region names, one per line, in declaration order
    fleet.py nodes REGION        a JSON v1 List of the region's Node objects (for kubectl apply -f -)
    fleet.py real-nodes          the real kubelet nodes of every region (pools whose shape says `real: true`),
                                 one JSON object per line: region, name, index, zone, labels, taints,
                                 extended (resources the node advertises beside the machine's own)
    fleet.py summary             one line per region: name and node counts
"""

from __future__ import annotations

import json
import os
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("sandbox/fleet.py needs PyYAML for the system python3 (Debian: apt-get install python3-yaml)")

FLEET = os.environ.get("GPUCLOUD_SANDBOX_FLEET") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "fleet.yaml"
)


def load(path: str = FLEET) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


# Where a node sits in the fabric, with Topograph's label names (the catalog's Region defaults): a block
# is the nodes under one spine switch, a rack those under one leaf.
BLOCK_LABEL = "network.topology.nvidia.com/spine"
RACK_LABEL = "network.topology.nvidia.com/leaf"


def placement(region: dict, pool: dict, index: int) -> tuple[str, str, str]:
    """(zone, block, rack) of a pool's node: `block_size` nodes a block (the whole pool when unset),
    `rack_size` nodes a rack (2 when unset), and a block's nodes all in one zone, the region's blocks
    (pool after pool) taking its zones in turn."""
    block_index, in_block = divmod(index, _block_size(pool))
    earlier = 0
    for other in region["pools"]:
        if other is pool or other["name"] == pool["name"]:
            break
        earlier += -(-int(other["count"]) // _block_size(other))
    block = f"{region['name']}-{pool['name']}-b{block_index}"
    zones = region["zones"]
    rack = f"{block}-r{in_block // int(pool.get('rack_size') or 2)}"
    return zones[(earlier + block_index) % len(zones)], block, rack


def _block_size(pool: dict) -> int:
    return int(pool.get("block_size") or pool["count"] or 1)


def node(region: dict, pool: dict, shape: dict, index: int) -> dict:
    name = f"{region['name']}-{pool['name']}-{index}"
    zone, block, rack = placement(region, pool, index)
    labels = {
        "type": "real" if shape.get("real") else "kwok",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": shape.get("instance-type", pool["shape"]),
        "topology.kubernetes.io/region": region["name"],
        "topology.kubernetes.io/zone": zone,
        BLOCK_LABEL: block,
        RACK_LABEL: rack,
        "gpucloud.io/pool": pool["name"],
    }
    capacity = {k: str(v) for k, v in shape["capacity"].items()}
    allocatable = {k: str(v) for k, v in shape["allocatable"].items()}
    taints = []
    gpu = shape.get("gpu")
    if gpu:
        major, _, minor = str(gpu["compute"]).partition(".")
        labels.update(
            {
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": gpu["product"],
                "nvidia.com/gpu.count": str(gpu["count"]),
                "nvidia.com/gpu.memory": str(gpu["memory"]),
                "nvidia.com/gpu.family": gpu["family"],
                "nvidia.com/gpu.compute.major": major,
                "nvidia.com/gpu.compute.minor": minor or "0",
                "nvidia.com/gpu.machine": shape.get("instance-type", pool["shape"]),
            }
        )
        taints.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
        mig = shape.get("mig")
        whole_gpus = 0 if mig else int(gpu["count"])
        labels["nvidia.com/mig.capable"] = "true" if gpu["family"] in ("hopper", "ampere") else "false"
        if mig:
            labels["nvidia.com/mig.strategy"] = mig.get("strategy", "mixed")
            labels["nvidia.com/mig.config"] = mig.get("config", "custom")
            labels["nvidia.com/mig.config.state"] = "success"
            for profile, spec in mig["profiles"].items():
                res = f"nvidia.com/mig-{profile}"
                labels[f"{res}.count"] = str(spec["count"])
                labels[f"{res}.memory"] = str(spec["memory"])
                labels[f"{res}.product"] = spec["product"]
                capacity[res] = allocatable[res] = str(spec["count"])
        capacity["nvidia.com/gpu"] = allocatable["nvidia.com/gpu"] = str(whole_gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            # kwok manages only the nodes carrying this annotation (see sandbox.sh).
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": labels,
        },
        "spec": {"taints": taints} if taints else {},
        "status": {"capacity": capacity, "allocatable": allocatable},
    }


def nodes(fleet: dict, region_name: str) -> list[dict]:
    """The region's kwok nodes (real ones register themselves: see real_nodes)."""
    for region in fleet["regions"]:
        if region["name"] == region_name:
            out = []
            for pool in region["pools"]:
                shape = fleet["shapes"][pool["shape"]]
                if shape.get("real"):
                    continue
                out.extend(node(region, pool, shape, i) for i in range(int(pool["count"])))
            return out
    raise SystemExit(f"unknown region {region_name!r} in {FLEET}")


def real_nodes(fleet: dict) -> list[dict]:
    """Every real node of the fleet, numbered across regions (the number picks its addresses)."""
    out = []
    for region in fleet["regions"]:
        for pool in region["pools"]:
            shape = fleet["shapes"][pool["shape"]]
            if not shape.get("real"):
                continue
            for i in range(int(pool["count"])):
                kwok_like = node(region, pool, shape, i)
                labels = dict(kwok_like["metadata"]["labels"])
                labels.pop("kubernetes.io/hostname")  # the kubelet sets its own
                machine = ("cpu", "memory", "ephemeral-storage", "pods")
                extended = {k: v for k, v in kwok_like["status"]["capacity"].items() if k not in machine}
                out.append(
                    {
                        "region": region["name"],
                        "name": kwok_like["metadata"]["name"],
                        "index": len(out),
                        "zone": labels["topology.kubernetes.io/zone"],
                        "labels": labels,
                        "taints": kwok_like["spec"].get("taints", []),
                        "extended": extended,
                    }
                )
    return out


def main(argv: list[str]) -> int:
    fleet = load()
    if argv[:1] == ["regions"]:
        print("\n".join(r["name"] for r in fleet["regions"]))
    elif argv[:1] == ["nodes"] and len(argv) == 2:
        json.dump({"apiVersion": "v1", "kind": "List", "items": nodes(fleet, argv[1])}, sys.stdout, indent=1)
        print()
    elif argv[:1] == ["real-nodes"]:
        for n in real_nodes(fleet):
            print(json.dumps(n, sort_keys=True))
    elif argv[:1] == ["summary"]:
        for r in fleet["regions"]:
            parts = [f"{p['count']}x {p['name']}" for p in r["pools"]]
            print(f"{r['name']}: {', '.join(parts)}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
