"""No network in the Alpha Cycle: an in-process guard on outbound connections.

`block_network(stage)` patches the socket layer so that any attempt to open an internet
connection (IPv4 or IPv6, by `connect`, `connect_ex` or `create_connection`) raises
`NetworkBlocked` naming the stage. Unix-domain sockets (local IPC) stay allowed. Every alpha
command calls it before doing any work, so an accidental network call fails loudly instead
of making a backtest depend on the outside world.

`allow_hosts` lets a stage that runs on a Dask cluster (the sweep) reach the cluster's own
hosts and nothing else: a connection is allowed only when its address is one of those IPs
(names are resolved once, when the guard is installed).
"""

from __future__ import annotations

import socket

from ..contracts import QuantlakeError

_INET = {socket.AF_INET, socket.AF_INET6}
_original = {}


class NetworkBlocked(QuantlakeError, ConnectionRefusedError):
    pass


def resolve_hosts(hosts) -> frozenset[str]:
    """The IP addresses of `hosts` (names or literal IPs)."""
    ips = set()
    for host in hosts:
        for family, *_, sockaddr in socket.getaddrinfo(host, None):
            if family in _INET:
                ips.add(sockaddr[0])
    return frozenset(ips)


def _refuse(stage: str, address) -> None:
    raise NetworkBlocked(
        f"quantlake {stage}: network access is blocked in the Alpha Cycle "
        f"(attempted connection to {address!r}); alpha stages read only their snapshot"
    )


def block_network(stage: str, allow_hosts=()) -> None:
    """Install the guard for the rest of this process (idempotent; the last call wins)."""
    if not _original:
        _original["connect"] = socket.socket.connect
        _original["connect_ex"] = socket.socket.connect_ex
        _original["create_connection"] = socket.create_connection

    allowed = resolve_hosts(allow_hosts)

    def connect(self, address):
        if self.family in _INET and address[0] not in allowed:
            _refuse(stage, address)
        return _original["connect"](self, address)

    def connect_ex(self, address):
        if self.family in _INET and address[0] not in allowed:
            _refuse(stage, address)
        return _original["connect_ex"](self, address)

    def create_connection(address, *args, **kwargs):
        if not allowed or not resolve_hosts([address[0]]) <= allowed:
            _refuse(stage, address)
        return _original["create_connection"](address, *args, **kwargs)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.create_connection = create_connection


def unblock_network() -> None:
    """Remove the guard (for tests)."""
    if _original:
        socket.socket.connect = _original["connect"]
        socket.socket.connect_ex = _original["connect_ex"]
        socket.create_connection = _original["create_connection"]
