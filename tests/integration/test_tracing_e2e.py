"""Tracing end to end: a peer started with ``daemon --tracing`` sends its spans to the Jaeger agent at
``observations.tracing.jaeger_agent_endpoint`` (here a UDP socket of the test) as Go's peer does: jaeger.thrift
``emitBatch`` messages in the compact protocol, with the configured service name, spans nested as the calls were.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.jaeger.thrift.gen.agent import Agent
from tests.integration.cluster_harness import ctl, init_peers, start_cluster, stop_all
from thrift.protocol import TCompactProtocol
from thrift.transport import TTransport

pytestmark = pytest.mark.timeout(180)


def decode_batch(datagram: bytes) -> Any:
    """One UDP datagram a Jaeger agent receives: ``Agent.emitBatch(batch)``."""
    proto = TCompactProtocol.TCompactProtocol(TTransport.TMemoryBuffer(datagram))
    name, _type, _seq = proto.readMessageBegin()
    assert name == "emitBatch"
    args = Agent.emitBatch_args()
    args.read(proto)
    return args.batch


def test_daemon_tracing_sends_nested_spans_to_the_jaeger_agent(tmp_path: Path) -> None:
    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.bind(("127.0.0.1", 0))
    agent.settimeout(0.5)
    port = agent.getsockname()[1]
    # enable_tracing stays false in service.json: --tracing turns it on, as in Go
    peers = init_peers(tmp_path, 1, service_changes={
        "observations.tracing.jaeger_agent_endpoint": f"/ip4/127.0.0.1/udp/{port}",
        "observations.tracing.sampling_prob": 1.0,
        "observations.tracing.service_name": "cluster-under-test",
    })
    peer = peers[0]
    rest_pin = "restapi/POST /pins/{hash}"
    wanted = {rest_pin, "cluster/Pin", "consensus/LogPin", "tracker/stateless/Pin", "ipfsconn/ipfshttp/pin/add",
              "ipfsproxy/POST version"}
    spans: dict[int, Any] = {}
    services: set[str] = set()
    try:
        peer.start("--tracing")
        peer.wait_ready(90)
        f = tmp_path / "f.txt"
        f.write_text(f"trace me {time.time()}\n")
        cid = ctl(peer, "add", "--quieter", str(f)).stdout.strip().splitlines()[-1]
        status, body = peer.api("POST", f"/pins/{cid}?name=traced")
        assert status == 200, body
        proxy = peer.service["api"]["ipfsproxy"]["listen_multiaddress"].split("/")
        with urllib.request.urlopen(urllib.request.Request(
                f"http://{proxy[2]}:{proxy[4]}/api/v0/version", method="POST"), timeout=10) as resp:
            assert resp.status == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not wanted <= {s.operationName for s in spans.values()}:
            try:
                data = agent.recv(65536)
            except TimeoutError:
                continue
            batch = decode_batch(data)
            services.add(batch.process.serviceName)
            spans.update((s.spanId, s) for s in batch.spans)
    finally:
        stop_all(peers)
        agent.close()
    names = {s.operationName for s in spans.values()}
    assert wanted <= names, sorted(names)
    assert services == {"cluster-under-test"}
    by_name: dict[str, list[Any]] = {}
    for s in spans.values():
        by_name.setdefault(s.operationName, []).append(s)
    # the REST request's span holds the cluster's, which holds the consensus commit
    rest = by_name[rest_pin][-1]
    pin = next(s for s in by_name["cluster/Pin"] if s.parentSpanId == rest.spanId and s.traceIdLow == rest.traceIdLow)
    assert any(s.parentSpanId == pin.spanId for s in by_name["consensus/LogPin"])
    assert {t.key: t.vStr for t in pin.tags}.get("cid") == cid
    # the tracker's pin holds its IPFS call
    track = {s.spanId for s in by_name["tracker/stateless/Pin"]}
    assert any(s.parentSpanId in track for s in by_name["ipfsconn/ipfshttp/pin/add"])


def test_a_trace_crosses_peers(tmp_path: Path) -> None:
    """A status request on one peer asks the others over RPC; each serves its part in the requester's trace, so
    the agent gets one trace with spans of both peers: peer 1's ``rpc/serve/PinTracker.Status`` is the child of
    peer 0's ``rpc/PinTracker.Status``, inside peer 0's REST span."""
    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.bind(("127.0.0.1", 0))
    agent.settimeout(0.5)
    port = agent.getsockname()[1]
    peers = init_peers(tmp_path, 2, service_changes={
        "observations.tracing.enable_tracing": True,
        "observations.tracing.jaeger_agent_endpoint": f"/ip4/127.0.0.1/udp/{port}",
        "observations.tracing.sampling_prob": 1.0,
    })
    names = [p.service["cluster"]["peername"] for p in peers]
    spans: dict[int, tuple[str, Any]] = {}  # span ID -> (peer name, span)
    rest_status = "restapi/GET /pins/{hash}"
    try:
        start_cluster(peers)
        cid = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
        status, body = peers[0].api("POST", f"/pins/{cid}?replication-min=-1&replication-max=-1")
        assert status == 200, body
        status, body = peers[0].api("GET", f"/pins/{cid}")
        assert status == 200 and len(body["peer_map"]) == 2, body

        def both_sides() -> bool:  # each peer sends its spans on its own schedule
            traces = {(s.traceIdHigh, s.traceIdLow) for n, s in spans.values()
                      if n == names[0] and s.operationName == rest_status}
            return any(n == names[1] and s.operationName == "rpc/serve/PinTracker.Status"
                       and (s.traceIdHigh, s.traceIdLow) in traces for n, s in spans.values())

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not both_sides():
            try:
                data = agent.recv(65536)
            except TimeoutError:
                continue
            batch = decode_batch(data)
            for s in batch.spans:
                peer = {t.key: t.vStr for t in list(s.tags or []) + list(batch.process.tags or [])}.get("peer.name")
                spans[s.spanId] = (peer or "", s)
    finally:
        stop_all(peers)
        agent.close()
    rest = [s for n, s in spans.values() if n == names[0] and s.operationName == rest_status]
    assert rest, sorted({(n, s.operationName) for n, s in spans.values()})
    trace = (rest[-1].traceIdHigh, rest[-1].traceIdLow)
    in_trace = {sid: (n, s) for sid, (n, s) in spans.items() if (s.traceIdHigh, s.traceIdLow) == trace}
    served = [s for n, s in in_trace.values() if n == names[1] and s.operationName == "rpc/serve/PinTracker.Status"]
    assert served, sorted((n, s.operationName) for n, s in in_trace.values())
    caller_name, caller = in_trace[served[0].parentSpanId]
    assert (caller_name, caller.operationName) == (names[0], "rpc/PinTracker.Status")


def test_spans_go_to_an_otlp_collector_when_one_is_configured(tmp_path: Path) -> None:
    """``observations.tracing.otlp_endpoint`` (a pincluster extension): spans are posted to an OTLP/HTTP
    collector (protobuf ``ExportTraceServiceRequest`` to ``/v1/traces``) instead of the Jaeger agent."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[tuple[str, str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append((self.path, self.headers.get("Content-Type", ""), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    peers = init_peers(tmp_path, 1, service_changes={
        "observations.tracing.enable_tracing": True,
        "observations.tracing.sampling_prob": 1.0,
        "observations.tracing.service_name": "otlp-under-test",
        "observations.tracing.otlp_endpoint": f"http://127.0.0.1:{server.server_address[1]}/v1/traces",
    })
    names: set[str] = set()
    services: set[str] = set()
    try:
        peers[0].start()
        peers[0].wait_ready(90)
        status, body = peers[0].api("POST", "/pins/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG")
        assert status == 200, body
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not {"restapi/POST /pins/{hash}", "cluster/Pin"} <= names:
            time.sleep(0.3)
            for path, ctype, raw in list(received):
                assert path == "/v1/traces" and ctype == "application/x-protobuf"
                req = ExportTraceServiceRequest.FromString(raw)
                for rs in req.resource_spans:
                    services |= {a.value.string_value for a in rs.resource.attributes if a.key == "service.name"}
                    names |= {sp.name for ss in rs.scope_spans for sp in ss.spans}
    finally:
        stop_all(peers)
        server.shutdown()
    assert {"restapi/POST /pins/{hash}", "cluster/Pin", "consensus/LogPin"} <= names, sorted(names)
    assert services == {"otlp-under-test"}
    assert "sent to the OTLP collector at http://127.0.0.1:" in peers[0].log_path.read_text()
