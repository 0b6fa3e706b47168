"""observations.tracing in-process: spans off by default, the agent address, export to a UDP agent, and the
error of a peer configured to trace without the OpenTelemetry packages."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from pincluster.config.sections import TracingConfig
from pincluster.errors import ConfigError
from pincluster.observe import tracing
from pincluster.types.multiaddr import Multiaddr


def test_spans_are_null_while_tracing_is_off() -> None:
    assert not tracing.active()
    cm = tracing.span("cluster/Pin", cid=object())
    with cm as sp:
        assert sp is None
    assert cm is tracing.span("other")  # one shared null context: nothing built per call
    with tracing.span(lambda: pytest.fail("a lazy span name is built only for a span")):
        pass


def test_agent_address() -> None:
    assert tracing.agent_address(Multiaddr("/ip4/0.0.0.0/udp/6831")) == ("127.0.0.1", 6831)
    assert tracing.agent_address(Multiaddr("/ip4/10.0.0.7/udp/6832")) == ("10.0.0.7", 6832)
    assert tracing.agent_address(Multiaddr("/dns4/jaeger/udp/6831")) == ("jaeger", 6831)
    with pytest.raises(ConfigError, match="UDP address"):
        tracing.agent_address(Multiaddr("/ip4/127.0.0.1/tcp/6831"))


def test_spans_are_sent_to_the_agent_and_off_after_shutdown() -> None:
    from tests.integration.test_tracing_e2e import decode_batch

    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.bind(("127.0.0.1", 0))
    agent.settimeout(5)
    cfg = TracingConfig(enable_tracing=True, sampling_prob=1.0, service_name="svc-test",
                        jaeger_agent_endpoint=Multiaddr(f"/ip4/127.0.0.1/udp/{agent.getsockname()[1]}"))
    t = tracing.Tracing(cfg, peer_id="12D3KooWpeer", peername="p0")
    t.start()
    try:
        assert tracing.active()
        with tracing.span("outer", n=3), tracing.span(lambda: "in" + "ner", cid=Multiaddr("/ip4/1.2.3.4/tcp/1")):
            pass
        with pytest.raises(ValueError), tracing.span("failing"):
            raise ValueError("boom")
    finally:
        t.shutdown()  # sends what is buffered
    assert not tracing.active()
    batch = decode_batch(agent.recv(65536))
    agent.close()
    assert batch.process.serviceName == "svc-test"
    spans = {s.operationName: s for s in batch.spans}
    assert all({tag.key: tag.vStr for tag in s.tags}["peer.name"] == "p0" for s in batch.spans)
    assert set(spans) == {"outer", "inner", "failing"}
    assert spans["inner"].parentSpanId == spans["outer"].spanId
    assert {tag.key: tag.vStr for tag in spans["inner"].tags}["cid"] == "/ip4/1.2.3.4/tcp/1"
    assert {tag.key: tag.vLong for tag in spans["outer"].tags}["n"] == 3
    assert {tag.key: tag.vBool for tag in spans["failing"].tags}.get("error") is True


def test_sampling_prob_zero_sends_nothing() -> None:
    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.bind(("127.0.0.1", 0))
    agent.settimeout(1.5)
    cfg = TracingConfig(enable_tracing=True, sampling_prob=0.0,
                        jaeger_agent_endpoint=Multiaddr(f"/ip4/127.0.0.1/udp/{agent.getsockname()[1]}"))
    t = tracing.Tracing(cfg)
    t.start()
    try:
        for _ in range(20):
            with tracing.span("never"):
                # inside a trace the sampler dropped, no span is built at all
                assert tracing.span("child", cid="x") is tracing.span("other child")
    finally:
        t.shutdown()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        agent.recv(65536)
    assert time.monotonic() - started >= 1
    agent.close()


def test_tracing_without_the_packages_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.jaeger.thrift", None)  # import fails
    t = tracing.Tracing(TracingConfig(enable_tracing=True))
    with pytest.raises(ConfigError, match=r"pincluster\[tracing\]"):
        t.start()
    assert not tracing.active()
