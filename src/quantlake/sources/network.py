"""How the network sources (`binance`, `archive`) retry, say so, and give up.

One `Retrier` per source and host:

* every retry is announced before its wait (`<host>: GET <path>: <problem>; retry 2/4 in 1.0s`),
  so a run that waits on the network is never silent;
* waits grow `backoff_s * 2**n` up to `max_backoff_s`, and there are at most `retries` of them,
  so one request gives up within `(retries + 1) * timeout_s + sum(waits)` seconds (`budget_s`);
* a host name that does not resolve is not retried (no answer will come from a name the
  resolver does not know);
* a request that failed every attempt at the connection level (timeouts, refused or reset
  connections) marks the host unreachable when the host has not answered anything since the
  start or since the previous request that gave up: every later request of the run then fails
  at once with the same message instead of waiting again, symbol after symbol. A host that
  did answer in between is having a bad moment: that request alone fails (for its symbol);
* giving up on the host is one line naming it and saying what to do (`unreachable_message`).

Answers from the server (5xx, unreadable JSON) are retried the same way, but never mark the
host unreachable: it answered.
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import requests

from ..contracts import SymbolId
from .base import HostUnreachable, SourceError

OFFLINE_HINT = (
    "check the network, or work offline with `data.source: sim` (the simulated exchange) "
    "or `data.source: files` (your own bar files) in params.yaml"
)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def host_of(url: str) -> str:
    """`host[:port]` of a URL, as people read it in a message."""
    return urlsplit(url).netloc or url


def unreachable_message(host: str, problem: str) -> str:
    return f"cannot reach {host} ({problem}): {OFFLINE_HINT}"


def is_name_resolution_error(exc: BaseException) -> bool:
    """True when `exc` (a requests error) comes from a host name that did not resolve."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, socket.gaierror) or type(e).__name__ == "NameResolutionError":
            return True
        todo.extend(x for x in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args) if isinstance(x, BaseException))
    return False


@dataclass
class Retrier:
    """The retry policy and the reachability of one host (thread-safe enough: flags only)."""

    host: str
    timeout_s: float
    retries: int
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    log: Callable[[str], None] = say
    sleep: Callable[[float], None] = time.sleep
    unreachable: str | None = field(default=None, init=False)  # set once: every later request fails with it
    _heard: bool = field(default=False, init=False)  # an answer came since the start / the last give-up

    def answered(self) -> None:
        """The host answered a request (whatever its status)."""
        self._heard = True

    def wait_s(self, failures: int) -> float:
        """The wait before retry number `failures + 1`."""
        return min(self.max_backoff_s, self.backoff_s * 2**failures)

    @property
    def budget_s(self) -> float:
        """The longest one request can take before it gives up (network time + waits)."""
        return (self.retries + 1) * self.timeout_s + sum(self.wait_s(n) for n in range(self.retries))

    def check(self) -> None:
        """Fail at once when an earlier request found the host unreachable."""
        if self.unreachable is not None:
            raise HostUnreachable(self.unreachable)

    def connection_failed(self, failures: int, what: str, exc: BaseException, symbol: SymbolId | str | None) -> int:
        """After a connection-level error (no answer): wait and return the new failure count,
        or give up (see the module doc for when that gives up on the whole host)."""
        problem = f"{type(exc).__name__}: {_reason(exc)}"
        if is_name_resolution_error(exc):
            self.unreachable = unreachable_message(self.host, f"the host name does not resolve: {_reason(exc)}")
            raise HostUnreachable(self.unreachable)
        if failures < self.retries:
            return self._wait(failures, f"{what}: {problem}")
        gave_up = f"{what}: {problem}; gave up after {failures + 1} attempts"
        if self._heard:
            self._heard = False
            raise SourceError(gave_up, symbol=symbol, retryable=True)
        self.unreachable = unreachable_message(self.host, gave_up)
        raise HostUnreachable(self.unreachable)

    def answer_failed(self, failures: int, what: str, problem: str, symbol: SymbolId | str | None) -> int:
        """After a bad answer (5xx, unreadable body): wait and return the new failure count, or
        raise a `SourceError` for this request (the host answered: it stays reachable)."""
        if failures >= self.retries:
            raise SourceError(f"{what}: {problem} (gave up after {failures + 1} attempts)", symbol=symbol, retryable=True)
        return self._wait(failures, f"{what}: {problem}")

    def _wait(self, failures: int, message: str) -> int:
        wait = self.wait_s(failures)
        self.log(f"{self.host}: {message}; retry {failures + 1}/{self.retries} in {wait:g}s")
        self.sleep(wait)
        return failures + 1


def _reason(exc: BaseException) -> str:
    """The innermost readable reason of a requests/urllib3 error (not its whole repr chain)."""
    if isinstance(exc, requests.Timeout):
        return "no answer within the timeout"
    inner = exc
    while True:
        nxt = getattr(inner, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = inner.args[0] if inner.args and isinstance(inner.args[0], BaseException) else None
        if nxt is None or nxt is inner:
            break
        inner = nxt
    text = str(inner)
    if "): " in text and text.startswith(("HTTPConnection(", "HTTPSConnection(", "<urllib3")):
        text = text.split("): ", 1)[1]
    return text.strip() or type(inner).__name__


__all__ = ["Retrier", "HostUnreachable", "OFFLINE_HINT", "host_of", "unreachable_message", "is_name_resolution_error", "say"]
