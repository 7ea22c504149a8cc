"""No network in the Alpha Cycle: an in-process guard on outbound connections.

`block_network(stage)` patches the socket layer so that any attempt to open an internet
connection (IPv4 or IPv6, by `connect`, `connect_ex` or `create_connection`) raises
`NetworkBlocked` naming the stage. Unix-domain sockets (local IPC) stay allowed. Every alpha
command calls it before doing any work, so an accidental network call fails loudly instead
of making a backtest depend on the outside world.
"""

from __future__ import annotations

import socket

from ..contracts import QuantlakeError

_INET = {socket.AF_INET, socket.AF_INET6}
_original = {}


class NetworkBlocked(QuantlakeError, ConnectionRefusedError):
    pass


def _refuse(stage: str, address) -> None:
    raise NetworkBlocked(
        f"quantlake {stage}: network access is blocked in the Alpha Cycle "
        f"(attempted connection to {address!r}); alpha stages read only their snapshot"
    )


def block_network(stage: str) -> None:
    """Install the guard for the rest of this process (idempotent; the last stage name wins)."""
    if not _original:
        _original["connect"] = socket.socket.connect
        _original["connect_ex"] = socket.socket.connect_ex
        _original["create_connection"] = socket.create_connection

    def connect(self, address):
        if self.family in _INET:
            _refuse(stage, address)
        return _original["connect"](self, address)

    def connect_ex(self, address):
        if self.family in _INET:
            _refuse(stage, address)
        return _original["connect_ex"](self, address)

    def create_connection(address, *args, **kwargs):
        _refuse(stage, address)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.create_connection = create_connection


def unblock_network() -> None:
    """Remove the guard (for tests)."""
    if _original:
        socket.socket.connect = _original["connect"]
        socket.socket.connect_ex = _original["connect_ex"]
        socket.create_connection = _original["create_connection"]
