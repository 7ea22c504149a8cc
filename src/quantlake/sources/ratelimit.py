"""A request-weight pacer shared by every thread that spends one IP's weight budget.

Binance meters each IP by *request weight* per minute (6,000; klines cost 2, exchangeInfo 20,
the all-symbol 24h ticker 80), reports the weight used in the current minute in the
`X-MBX-USED-WEIGHT-1M` header, answers 429 past the budget and bans the IP (418, from 2
minutes up to 3 days) when a client keeps going after a 429. Every request first calls
`acquire(weight)`, which waits until four conditions hold:

1. No pause is in force: after a 429 or 418 nobody sends anything until its `Retry-After`.
2. A token bucket paces the weight: it refills at `limit * (1 - headroom) / window` per second
   and holds at most `burst`, so requests are spread evenly, and a thread that stalled (GIL,
   GC, a slow answer) can catch up by at most one burst.
3. A sliding-window guard makes the budget a hard bound: the weight of requests still in
   flight plus those *answered* within the last window, plus this one, stays within
   `limit * (1 - headroom)`. Every request that the server counts in one of its windows
   arrived after the window began, so was answered after it began, or is still in flight:
   the guard counts it. Whatever the network delays and the phase of the server's window,
   the server never counts more than the bound from us (the headroom is for requests we gave
   up on that still reach the server).
4. The server's used-weight header, when it reports more than our own traffic explains
   (another process on this IP, an earlier run), caps what we send until the server's window
   resets (its boundary comes from the server's clock, the `Date` header).

The pacer does no IO; the clock and sleep are injectable so its arithmetic can be tested.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable

POLL_S = 0.005  # how often a waiter re-checks when only an answer in flight can free the budget


class WeightPacer:
    def __init__(
        self,
        limit: float,
        window_s: float = 60.0,
        *,
        headroom: float = 0.02,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if limit <= 0 or window_s <= 0 or not 0 <= headroom < 1:
            raise ValueError("the weight limit and its window must be positive, the headroom in [0, 1)")
        self.limit = float(limit)
        self.window_s = float(window_s)
        self.safe_limit = self.limit * (1.0 - headroom)
        self.burst = float(burst) if burst is not None else max(2.0, round(self.limit * 0.05))
        self.rate = self.safe_limit / self.window_s
        self._clock, self._wall, self._sleep = clock, wall, sleep
        self._lock = threading.Lock()
        now = clock()
        self._tokens = self.burst
        self._last = now
        self._paused_until = now
        self._cap_until = now  # a cap from the server's header holds until its window resets
        self._cap_left = 0.0
        self._inflight = 0.0
        self._answered: collections.deque[tuple[float, float]] = collections.deque()  # (time, weight)
        self._answered_weight = 0.0
        self.weight_granted = 0.0
        self.wait_s = 0.0

    # -- the calls every request makes ---------------------------------------------------------

    def acquire(self, weight: float) -> None:
        """Block until `weight` may be sent, then account for it (call `done` when answered)."""
        if weight > self.safe_limit:
            raise ValueError(f"a request of weight {weight} can never fit the budget {self.safe_limit:.0f}")
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait_needed(now, weight)
                if wait <= 0:
                    self._grant(now, weight)
                    self.wait_s += waited
                    return
            wait = max(wait, 1e-6)  # float dust must not turn into a wait the clock cannot resolve
            self._sleep(wait)
            waited += wait

    def done(self, weight: float) -> None:
        """The request granted `weight` was answered (or given up on) now."""
        with self._lock:
            self._inflight = max(0.0, self._inflight - weight)
            self._answered.append((self._clock(), weight))
            self._answered_weight += weight

    # -- what the server tells us --------------------------------------------------------------

    def observe_used_weight(self, used: float, server_epoch_s: float | None = None) -> None:
        """Take the server's used weight in its current window into account (see module doc)."""
        with self._lock:
            now = self._clock()
            own = self._own_weight(now)
            if used <= own:
                return  # our own traffic explains it; the guard already bounds it
            server_now = self._wall() if server_epoch_s is None else server_epoch_s
            to_reset = self.window_s - (server_now % self.window_s)
            self._cap_until = now + to_reset
            self._cap_left = self.safe_limit - used - self._inflight

    def pause(self, seconds: float) -> None:
        """Nobody sends for `seconds` (a 429/418 `Retry-After`); then restart from one burst."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._paused_until = max(self._paused_until, now + max(0.0, seconds))
            self._tokens = min(self._tokens, 0.0)

    def paused_for(self) -> float:
        with self._lock:
            return max(0.0, self._paused_until - self._clock())

    # -- internals -----------------------------------------------------------------------------

    def _wait_needed(self, now: float, weight: float) -> float:
        self._refill(now)
        if now < self._paused_until:
            return self._paused_until - now
        if now < self._cap_until and self._cap_left < weight:
            return self._cap_until - now
        need = min(weight, self.burst)
        if self._tokens < need:
            return (need - self._tokens) / self.rate
        excess = self._own_weight(now) + weight - self.safe_limit
        if excess > 0:
            freed = 0.0
            for at, w in self._answered:  # oldest first: when will enough of them leave the window?
                freed += w
                if freed >= excess:
                    return at + self.window_s - now
            return POLL_S  # only answers still in flight can free the budget
        return 0.0

    def _grant(self, now: float, weight: float) -> None:
        self._tokens -= weight
        if now < self._cap_until:
            self._cap_left -= weight
        self._inflight += weight
        self.weight_granted += weight

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def _own_weight(self, now: float) -> float:
        """In flight + answered within the last window: all the server may count from us."""
        while self._answered and self._answered[0][0] <= now - self.window_s:
            self._answered_weight -= self._answered.popleft()[1]
        return self._inflight + self._answered_weight


__all__ = ["WeightPacer"]
