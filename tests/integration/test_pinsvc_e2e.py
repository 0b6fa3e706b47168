"""The Pinning Service API on a real 3-peer cluster (daemons with embedded IPFS nodes on 127.0.0.1), driven
over HTTP with a bearer token through the public spec's example flows: create and poll until pinned, list
with filters, replace, delete."""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.cluster_harness import Peer, running_cluster, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kubo import KuboDaemon, kubo_binary  # type: ignore[import-not-found,unused-ignore]

pytestmark = pytest.mark.timeout(240)

USER, PASSWORD = "pinner", "correct horse battery staple"


class PinSvc:
    """A tiny client of one peer's Pinning Service API."""

    def __init__(self, peer: Peer) -> None:
        parts = peer.service["api"]["pinsvcapi"]["http_listen_multiaddress"].split("/")
        self.base = f"http://{parts[2]}:{parts[4]}"
        self.auth = ""

    def call(self, method: str, path: str, body: Any = None, auth: str | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        header = self.auth if auth is None else auth
        if header:
            headers["Authorization"] = header
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        return status, (json.loads(raw) if raw.strip() else None)

    def login(self) -> None:
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        status, body = self.call("POST", "/token", auth=basic)
        assert status == 200, body
        self.auth = "Bearer " + body["token"]

    def list(self, **params: str) -> dict[str, Any]:
        status, body = self.call("GET", "/pins?" + urllib.parse.urlencode(params))
        assert status == 200, body
        assert set(body) == {"count", "results"}
        return body  # type: ignore[no-any-return]


def add_to_node(peer: Peer, content: bytes) -> str:
    """Put content in one peer's IPFS node without pinning it: the cluster must fetch it from there."""
    boundary = "pinsvcboundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(peer.ipfs_api + "/add?pin=false", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        lines = [json.loads(x) for x in resp.read().decode().splitlines() if x.strip()]
    return str(lines[-1]["Hash"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Peer]]:
    root: Path = tmp_path_factory.mktemp("pinsvc3")
    with running_cluster(root, 3, service_changes={"api.pinsvcapi.basic_auth_credentials": {USER: PASSWORD}}) as peers:
        yield peers


@pytest.fixture(scope="module")
def svc(cluster: list[Peer]) -> list[PinSvc]:
    clients = [PinSvc(p) for p in cluster]
    for c in clients:
        c.login()
    return clients


def allocated(peer: Peer) -> set[str]:
    """The CIDs of the cluster pinset, from the REST API (204 with no body when it is empty)."""
    status, body = peer.api("GET", "/allocations")
    assert status in (200, 204), body
    return {p["cid"] for p in body or []}


def pinned(svc: PinSvc, cid: str) -> Callable[[], Any]:
    def check() -> Any:
        status, body = svc.call("GET", f"/pins/{cid}")
        return body if status == 200 and body["status"] == "pinned" else None

    return check


def test_auth_is_required(cluster: list[Peer], svc: list[PinSvc]) -> None:
    status, body = svc[0].call("GET", "/pins", auth="")
    assert status == 401
    assert body["error"]["reason"] == "UNAUTHORIZED"
    status, body = svc[0].call("GET", "/pins", auth="Bearer forged.token.value")
    assert status == 401
    status, _ = svc[0].call("GET", "/health", auth="")
    assert status == 204


def test_spec_flows(cluster: list[Peer], svc: list[PinSvc]) -> None:
    run = os.urandom(6).hex()
    a, b, c = svc
    # --- create: content sits on peer0's node only; the request names it in origins -----------------
    cid1 = add_to_node(cluster[0], f"first {run}".encode() * 100)
    status, created = a.call("POST", "/pins", {"cid": cid1, "name": f"Alpha-{run}.txt", "meta": {"app": run}})
    assert status == 202, created
    assert created["requestid"] == cid1 and created["status"] == "queued"
    assert created["pin"] == {"cid": cid1, "name": f"Alpha-{run}.txt", "meta": {"app": run}}
    assert created["delegates"] and all("/p2p/" in d for d in created["delegates"])
    done = wait_for(pinned(b, cid1), what=f"{cid1} pinned")  # polled through another peer's API
    assert done["created"] == created["created"]  # immutable
    assert done["pin"]["meta"] == {"app": run}
    assert done["delegates"] and all("/p2p/" in d for d in done["delegates"])

    cid2 = add_to_node(cluster[1], f"second {run}".encode() * 100)
    status, second = c.call("POST", "/pins", {"cid": cid2, "name": f"beta-{run}.bin", "meta": {"app": run,
                                                                                                "kind": "b"}})
    assert status == 202, second
    wait_for(pinned(a, cid2), what=f"{cid2} pinned")

    # --- list with filters -----------------------------------------------------------------------------
    mine = a.list(meta=json.dumps({"app": run}))
    assert mine["count"] == 2
    assert [r["requestid"] for r in mine["results"]] == [cid2, cid1]  # newest first
    assert all(r["status"] == "pinned" for r in mine["results"])
    assert a.list(meta=json.dumps({"app": run, "kind": "b"}))["count"] == 1
    assert a.list(status="pinned", meta=json.dumps({"app": run}))["count"] == 2
    assert a.list(status="queued,pinning,failed", meta=json.dumps({"app": run}))["count"] == 0
    assert [r["requestid"] for r in a.list(name=f"Alpha-{run}.txt")["results"]] == [cid1]
    assert a.list(name=f"alpha-{run}.txt")["count"] == 0
    assert a.list(name=f"alpha-{run}.txt", match="iexact")["count"] == 1
    assert a.list(name=run, match="partial")["count"] == 2
    assert a.list(name=f"BETA-{run}", match="ipartial")["count"] == 1
    page = a.list(limit="1", meta=json.dumps({"app": run}))
    assert page["count"] == 2 and [r["requestid"] for r in page["results"]] == [cid2]
    older = a.list(limit="1", meta=json.dumps({"app": run}), before=page["results"][0]["created"])
    assert [r["requestid"] for r in older["results"]] == [cid1]
    newer = a.list(meta=json.dumps({"app": run}), after=older["results"][0]["created"])
    assert [r["requestid"] for r in newer["results"]] == [cid2]
    assert [r["requestid"] for r in a.list(cid=f"{cid1},{cid2}", name=f"Alpha-{run}.txt")["results"]] == [cid1]
    status, body = a.call("GET", "/pins?limit=1001")
    assert status == 400 and body["error"]["reason"] == "BAD_REQUEST"

    # --- replace: cid1's request becomes cid3 -----------------------------------------------------------
    cid3 = add_to_node(cluster[2], f"third {run}".encode() * 100)
    status, replaced = b.call("POST", f"/pins/{cid1}", {"cid": cid3, "name": f"Alpha-{run}.txt",
                                                        "meta": {"app": run, "v": "2"}})
    assert status == 202, replaced
    assert replaced["requestid"] == cid3
    done = wait_for(pinned(a, cid3), what=f"{cid3} pinned")
    assert done["pin"]["meta"] == {"app": run, "v": "2"}
    status, body = a.call("GET", f"/pins/{cid1}")
    assert status == 404 and body["error"]["reason"] == "NOT_FOUND"
    allocations = allocated(cluster[0])
    assert cid3 in allocations and cid1 not in allocations

    # --- delete ------------------------------------------------------------------------------------------
    for cid in (cid2, cid3):
        status, body = c.call("DELETE", f"/pins/{cid}")
        assert (status, body) == (202, None)
    wait_for(lambda: not (allocated(cluster[1]) & {cid2, cid3}), what="the pins to leave /allocations")
    for cid in (cid2, cid3):
        status, _ = a.call("GET", f"/pins/{cid}")
        assert status == 404
    assert a.list(meta=json.dumps({"app": run}), status="queued,pinning,pinned,failed")["count"] == 0
    status, _ = a.call("DELETE", f"/pins/{cid2}")
    assert status == 404


def test_kubo_pin_remote(cluster: list[Peer], svc: list[PinSvc], tmp_path: Path) -> None:
    """kubo's ``ipfs pin remote`` (the reference client of the public spec) against the cluster."""
    kubo = KuboDaemon(tmp_path / "kubo", binary=kubo_binary()).start()
    try:
        run = os.urandom(6).hex()
        token = svc[0].auth.removeprefix("Bearer ")
        kubo.ipfs("pin", "remote", "service", "add", "cluster", svc[0].base, token)
        cid = add_to_node(cluster[1], f"kubo {run}".encode() * 50)
        # foreground: kubo polls GET /pins/{requestid} until the cluster reports pinned
        out = kubo.ipfs("pin", "remote", "add", "--service=cluster", f"--name=kubo-{run}", cid, timeout=90)
        assert cid in out and "pinned" in out, out
        out = kubo.ipfs("pin", "remote", "ls", "--service=cluster", f"--name=kubo-{run}")
        assert out.split() == [cid, "pinned", f"kubo-{run}"], out
        status, body = svc[2].call("GET", f"/pins/{cid}")
        assert status == 200 and body["pin"]["name"] == f"kubo-{run}"
        kubo.ipfs("pin", "remote", "rm", "--service=cluster", f"--cid={cid}")
        status, _ = svc[0].call("GET", f"/pins/{cid}")  # the peer that took the delete: at once
        assert status == 404
        # another peer applies the committed unpin a moment later (Raft followers apply asynchronously)
        wait_for(lambda: svc[2].call("GET", f"/pins/{cid}")[0] == 404, what="the unpin on another peer", timeout=10)
        out = kubo.ipfs("pin", "remote", "ls", "--service=cluster", f"--cid={cid}",
                        "--status=queued,pinning,pinned,failed")
        assert out.strip() == ""
    finally:
        kubo.stop()
