"""Bytes each protocol moves, for ``GET /health/bandwidth`` (``ipfs-cluster-ctl health bandwidth``).

Go's peer reports its libp2p host's counter: per protocol, the bytes in and out since start and a rate in
bytes per second. The rate is go-flow-metrics' EWMA, sampled once a second (``rate += (1 - e⁻¹)·(instant -
rate)``, the first sample taken as it is), so ours is computed the same way and reads alike.

What is counted: every byte a peer connection sends or receives after its handshake (frames, their length
prefixes and the encryption's tags), per transport: the cluster RPC's peer layer and the Raft transport (and,
in the embedded IPFS node, its swarm, for kubo's ``stats/bw``). A protocol shows up once it has moved a byte,
as libp2p's do (a lone peer reports ``{}``).

Each protocol's meter has one writer (the thread that drives its connections: the event loop for the RPC,
PySyncObj's thread for Raft), which only ever adds to its totals; the sampler only reads them. So no lock is
needed and no count is lost.
"""

from __future__ import annotations

import math

from pincluster.clock import SYSTEM_CLOCK, Clock
from pincluster.types.models import Bandwidth

__all__ = ["ALPHA", "BandwidthCounter", "Meter"]

#: go-flow-metrics' EWMA weight of a new one-second sample.
ALPHA = 1 - math.exp(-1.0)
_IDLE_RATE = 1e-13
_MIN_SAMPLE = 0.1  # as go-flow-metrics: samples closer than a tenth of the interval are skipped


class Meter:
    """Byte totals of one protocol or peer (added to by its transport) and their rates (set by the sampler)."""

    __slots__ = ("_seen_in", "_seen_out", "bytes_in", "bytes_out", "rate_in", "rate_out")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0
        self.rate_in = 0.0
        self.rate_out = 0.0
        self._seen_in = 0
        self._seen_out = 0

    def _sample(self, seconds: float) -> None:
        total_in, total_out = self.bytes_in, self.bytes_out  # read once: the writer may add meanwhile
        self.rate_in = _ewma(self.rate_in, (total_in - self._seen_in) / seconds)
        self.rate_out = _ewma(self.rate_out, (total_out - self._seen_out) / seconds)
        self._seen_in, self._seen_out = total_in, total_out

    def stats(self) -> Bandwidth:
        return Bandwidth(total_in=self.bytes_in, total_out=self.bytes_out, rate_in=self.rate_in,
                         rate_out=self.rate_out)


def _ewma(rate: float, instant: float) -> float:
    rate = instant if rate == 0 else rate + ALPHA * (instant - rate)
    return 0.0 if rate <= _IDLE_RATE else rate


class BandwidthCounter:
    """The meters of one endpoint, by protocol name and by remote peer, and the once-a-second sampler of their
    rates. Each connection adds to its protocol's meter and its peer's; the totals are the protocols' sum."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK, interval: float = 1.0) -> None:
        self._clock = clock
        self._interval = interval
        self._meters: dict[str, Meter] = {}
        self._peers: dict[str, Meter] = {}
        self._last = clock.monotonic()

    def meter(self, protocol: str) -> Meter:
        """The meter of ``protocol`` (made on first use; a transport keeps it and adds to it)."""
        m = self._meters.get(protocol)
        if m is None:
            m = self._meters[protocol] = Meter()
        return m

    def peer_meter(self, peer: str) -> Meter:
        """The meter of the remote peer ``peer`` (its ID as text), made on first use."""
        m = self._peers.get(peer)
        if m is None:
            m = self._peers[peer] = Meter()
        return m

    def sample(self) -> None:
        """Update every rate with the bytes moved since the last sample."""
        now = self._clock.monotonic()
        elapsed = now - self._last
        if elapsed < _MIN_SAMPLE * self._interval:
            return
        self._last = now
        for m in (*self._meters.values(), *self._peers.values()):
            m._sample(elapsed)

    def by_protocol(self) -> dict[str, Bandwidth]:
        """Each protocol that has moved a byte, with its totals and rates (bytes per second)."""
        return {name: m.stats() for name, m in sorted(self._meters.items()) if m.bytes_in or m.bytes_out}

    def for_protocol(self, protocol: str) -> Bandwidth:
        """One protocol's figures (zeros for one never seen, as libp2p's counter answers)."""
        m = self._meters.get(protocol)
        return Bandwidth() if m is None else m.stats()

    def for_peer(self, peer: str) -> Bandwidth:
        """One remote peer's figures (zeros for a peer never seen)."""
        m = self._peers.get(peer)
        return Bandwidth() if m is None else m.stats()

    def totals(self) -> Bandwidth:
        """Every protocol together."""
        ms = list(self._meters.values())
        return Bandwidth(total_in=sum(m.bytes_in for m in ms), total_out=sum(m.bytes_out for m in ms),
                         rate_in=sum(m.rate_in for m in ms), rate_out=sum(m.rate_out for m in ms))

    async def run(self) -> None:
        """Sample every ``interval`` seconds until cancelled."""
        while True:
            await self._clock.sleep(self._interval)
            self.sample()
