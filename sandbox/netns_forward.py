#!/usr/bin/env python3
"""Listens on an address inside a network namespace and forwards every connection to an address of the
namespace this process runs in (sandbox/realnodes.sh, docs/sandbox.md "Real nodes").

A real node of the sandbox lives in a network namespace of its own, while each region's kube-apiserver
listens on the machine's 127.0.0.1 only. This gives the node's kubelet, kube-proxy and policy enforcer an
apiserver at 127.0.0.1:PORT of their own namespace (the address its serving certificate names) without
the apiserver listening anywhere else. The listening socket is made inside the node's namespace (setns on
this thread, then back); connections out are made from the machine's namespace.

    netns_forward.py NETNS_PATH LISTEN_PORT TARGET_PORT [LISTEN_PORT TARGET_PORT ...]

Standard library only: it runs with the system python3.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import sys

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def listen_in(netns_path: str, port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:port of the namespace at netns_path."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    there = os.open(netns_path, os.O_RDONLY)
    try:
        _setns(there)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # The node's loopback is down until someone brings it up; the caller does.
            sock.bind(("127.0.0.1", port))
            sock.listen(256)
            sock.setblocking(False)
        finally:
            _setns(home)
    finally:
        os.close(home)
        os.close(there)
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _handler(target_port: int):  # type: ignore[no-untyped-def]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return handle


async def serve(netns_path: str, pairs: list[tuple[int, int]]) -> None:
    servers = [
        await asyncio.start_server(_handler(target), sock=listen_in(netns_path, listen))
        for listen, target in pairs
    ]
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv: list[str]) -> int:
    if len(argv) < 3 or len(argv) % 2 == 0:
        print(__doc__, file=sys.stderr)
        return 2
    numbers = [int(a) for a in argv[1:]]
    pairs = list(zip(numbers[::2], numbers[1::2], strict=True))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(argv[0], pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
