"""Which registry hosts an image may never come from, whatever the policy allows.

The node's container runtime pulls images, outside every NetworkPolicy of the tenant's namespace; a
reference to an address inside the cluster, the node itself (localhost) or cloud metadata would make the node
send requests there for a tenant. IP addresses (in any spelling a resolver accepts, such as `2130706433` or
`127.1`) and localhost are therefore refused outright; names are left to the staff allowlist.
"""

from __future__ import annotations

import ipaddress


def registry_refusal(registry: str) -> str | None:
    """Why `registry` (a host with an optional :port) is refused, or None."""
    host = registry.strip().lower()
    if host.startswith("["):
        return "IP addresses are not allowed as registries; use the registry's name."
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    host = host.rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return "localhost is not allowed as a registry."
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return "IP addresses are not allowed as registries; use the registry's name."
    # No top-level domain starts with a digit, so a last label that does is a numeric address form
    # (127.1, 2130706433, 0x7f000001) that resolvers turn into an IP.
    if host.rsplit(".", 1)[-1][:1].isdigit():
        return "IP addresses are not allowed as registries; use the registry's name."
    return None
