"""The Pinning Service API over real HTTP (aiohttp on 127.0.0.1:0) against an in-process fake cluster:
every route, the status mapping, filters, pagination, errors in the public spec's shape, and auth."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from pincluster.api.common.settings import HTTPAPISettings
from pincluster.api.pinsvc.models import RELEVANT
from pincluster.api.pinsvc.server import PinSvcAPI
from pincluster.errors import NotFound, Unavailable
from pincluster.p2p.keys import PrivateKey
from pincluster.types.cid import CID, sha256_multihash
from pincluster.types.codec import to_json
from pincluster.types.models import (
    GlobalPinInfo,
    Metric,
    Pin,
    PingValue,
    PinInfoShort,
    PinOptions,
)
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import PinType, TrackerStatus

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
USERS = {"admin": "s3cret"}


def new_peer() -> PeerID:
    return PrivateKey.generate_ed25519().public_key().peer_id()


def cid_of(data: bytes) -> CID:
    return CID.from_bytes(sha256_multihash(data))


class FakeCluster:
    """An in-memory pinset on three peers; tests set each CID's per-peer tracker status."""

    def __init__(self) -> None:
        self.members = [new_peer() for _ in range(3)]
        self.ipfs = {p: new_peer() for p in self.members}
        self.pinset: dict[CID, Pin] = {}
        self.states: dict[CID, dict[PeerID, TrackerStatus]] = {}
        self.errors: dict[CID, str] = {}
        self.clock = T0
        self.calls: list[tuple[str, Any]] = []
        self.fail_status = False

    def addr(self, peer: PeerID) -> Multiaddr:
        return Multiaddr(f"/ip4/10.0.0.{self.members.index(peer) + 1}/tcp/4001")

    def _now(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    async def pin(self, cid: CID, options: PinOptions) -> Pin:
        self.calls.append(("pin", (cid, options)))
        old = self.pinset.get(cid)
        allocs = tuple(options.user_allocations or ()) or (old.allocations if old else tuple(self.members[:2]))
        pin = Pin.with_options(cid, options, allocations=allocs, timestamp=self._now())
        self.pinset[cid] = pin
        self.states.setdefault(cid, {})
        return pin

    async def pin_update(self, from_cid: CID, to_cid: CID, options: PinOptions) -> Pin:
        self.calls.append(("pin_update", (from_cid, to_cid, options)))
        old = self.pinset.get(from_cid)
        if old is None:
            raise NotFound("pin is not part of the pinset")
        pin = old.replace(cid=to_cid, pin_update=from_cid, timestamp=self._now(), name=options.name or old.name)
        self.pinset[to_cid] = pin
        return pin

    async def unpin(self, cid: CID) -> Pin:
        self.calls.append(("unpin", cid))
        pin = self.pinset.pop(cid, None)
        if pin is None:
            raise NotFound("pin is not part of the pinset")
        self.states.pop(cid, None)
        return pin

    async def pin_get(self, cid: CID) -> Pin:
        pin = self.pinset.get(cid)
        if pin is None:
            raise NotFound("pin is not part of the pinset")
        return pin

    def _gpi(self, cid: CID, flt: TrackerStatus = TrackerStatus.UNDEFINED) -> GlobalPinInfo | None:
        pin = self.pinset.get(cid)
        peer_map = {}
        for p in self.members:
            if pin is None:
                st = TrackerStatus.UNPINNED
            elif p in pin.allocations:
                st = self.states.get(cid, {}).get(p, TrackerStatus.PIN_QUEUED)
            else:
                st = TrackerStatus.REMOTE
            if flt and not int(st) & int(flt):
                continue
            peer_map[p] = PinInfoShort(
                peername=f"peer{self.members.index(p)}",
                ipfs_peer_id=self.ipfs[p],
                ipfs_peer_addresses=(self.addr(p),),
                status=st,
                timestamp=self.clock,
                error=self.errors.get(cid, "") if int(st) & int(TrackerStatus.ERROR) else "",
            )
        if not peer_map:
            return None
        return GlobalPinInfo(
            cid=cid,
            name=pin.name if pin else "",
            allocations=pin.allocations if pin else (),
            origins=pin.origins if pin else None,
            created=pin.timestamp if pin else self.clock,
            metadata=pin.metadata if pin else None,
            peer_map=peer_map,
        )

    async def status(self, cid: CID, *, local: bool = False) -> GlobalPinInfo:
        if self.fail_status:
            raise Unavailable("peers are unreachable")
        gpi = self._gpi(cid)
        assert gpi is not None
        return gpi

    async def status_all(self, filter: TrackerStatus, *, local: bool = False) -> AsyncIterator[GlobalPinInfo]:
        self.calls.append(("status_all", filter))
        if self.fail_status:
            raise Unavailable("peers are unreachable")
        for cid in sorted(self.pinset):
            gpi = self._gpi(cid, filter)
            if gpi is not None:
                yield gpi

    async def latest_metrics(self, name: str) -> list[Metric]:
        assert name == "ping"
        return [
            Metric(name="ping", peer=p, valid=True,
                   value=to_json(PingValue(peer_name="x", ipfs_id=self.ipfs[p],
                                           ipfs_addresses=(self.addr(p),))).decode())
            for p in self.members
        ]

    async def pins(self, types: Collection[PinType] | None = None) -> AsyncIterator[Pin]:
        for p in self.pinset.values():
            yield p


class Env:
    def __init__(self, api: PinSvcAPI, cluster: FakeCluster, session: aiohttp.ClientSession) -> None:
        self.api, self.cluster, self.session = api, cluster, session
        self.headers: dict[str, str] = {}

    async def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.session.request(method, self.api.url + path, data=data,
                                        headers={**self.headers, **(headers or {})},
                                        allow_redirects=False) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text.strip() else None)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    cluster = FakeCluster()
    api = PinSvcAPI(cluster, HTTPAPISettings(listen=(Multiaddr("/ip4/127.0.0.1/tcp/0"),)))  # type: ignore[arg-type]
    await api.start()
    async with aiohttp.ClientSession() as session:
        yield Env(api, cluster, session)
    await api.stop()


def assert_failure(body: Any, reason: str, *words: str) -> None:
    assert set(body) == {"error"}, body
    assert body["error"]["reason"] == reason, body
    for w in words:
        assert w in body["error"]["details"], body


# --- create / get / delete --------------------------------------------------------------------------------
async def test_create_returns_queued_pin_status(env: Env) -> None:
    cid = cid_of(b"one")
    origin = "/ip4/192.0.2.1/tcp/4001/p2p/" + str(new_peer())
    status, body = await env.call("POST", "/pins", {"cid": str(cid), "name": "PreciousData.pdf",
                                                     "origins": [origin], "meta": {"app_id": "99"}})
    assert status == 202, body
    assert set(body) == {"requestid", "status", "created", "pin", "delegates", "info"}
    assert body["requestid"] == str(cid)
    assert body["status"] == "queued"
    assert body["created"] == "2026-01-02T03:04:06Z"
    assert body["pin"] == {"cid": str(cid), "name": "PreciousData.pdf", "origins": [origin], "meta": {"app_id": "99"}}
    c = env.cluster
    want = [f"{c.addr(p)}/p2p/{c.ipfs[p]}" for p in c.members[:2]]  # the allocated peers only
    assert body["delegates"] == want
    assert body["info"]["warning1"] == "CID used for requestID. Conflicts possible"
    name, (got_cid, opts) = c.calls[0]
    assert name == "pin" and got_cid == cid
    assert opts.name == "PreciousData.pdf" and opts.metadata == {"app_id": "99"}
    assert [str(o) for o in opts.origins] == [origin]


async def test_create_minimal_pin_omits_empty_fields(env: Env) -> None:
    cid = cid_of(b"min")
    status, body = await env.call("POST", "/pins", {"cid": str(cid)})
    assert status == 202
    assert body["pin"] == {"cid": str(cid)}
    opts = env.cluster.calls[0][1][1]
    assert opts.metadata is None and opts.origins is None and opts.name == ""


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"not json", ("error decoding request body",)),
        (b"{}", ("cid",)),
        (b'{"cid": ""}', ("cid",)),
        (b'{"cid": "notacid"}', ("notacid",)),
        (json.dumps({"cid": str(cid_of(b"x")), "name": "n" * 256}).encode(), ("name", "255")),
        (json.dumps({"cid": str(cid_of(b"x")), "origins": ["/nope"]}).encode(), ("/nope",)),
        (json.dumps({"cid": str(cid_of(b"x")), "origins": ["/ip4/1.2.3.4/tcp/1"] * 21}).encode(), ("origins",)),
        (json.dumps({"cid": str(cid_of(b"x")), "meta": {"a": 1}}).encode(), ("meta",)),
    ],
)
async def test_create_rejects_bad_bodies(env: Env, raw: bytes, words: tuple[str, ...]) -> None:
    status, body = await env.call("POST", "/pins", raw=raw)
    assert status == 400, body
    assert_failure(body, "BAD_REQUEST", *words)
    assert env.cluster.pinset == {}


async def test_get_follows_the_tracker(env: Env) -> None:
    cid = cid_of(b"g")
    await env.call("POST", "/pins", {"cid": str(cid), "name": "g"})
    a, b, c = env.cluster.members
    st = env.cluster.states[cid]
    expectations = [
        ({}, "queued"),
        ({a: TrackerStatus.PINNING}, "queued"),  # b is still queued: queued wins over pinning
        ({a: TrackerStatus.PINNING, b: TrackerStatus.PINNING}, "pinning"),
        ({a: TrackerStatus.PINNED, b: TrackerStatus.PINNING}, "pinning"),
        ({a: TrackerStatus.PINNED, b: TrackerStatus.PINNED}, "pinned"),
        ({a: TrackerStatus.PINNED, b: TrackerStatus.UNEXPECTEDLY_UNPINNED}, "failed"),
        ({a: TrackerStatus.PIN_ERROR, b: TrackerStatus.PINNED}, "failed"),
        ({a: TrackerStatus.UNPINNED, b: TrackerStatus.UNPINNED}, "queued"),  # committed, not yet seen
    ]
    for states, want in expectations:
        st.clear()
        st.update(states)
        status, body = await env.call("GET", f"/pins/{cid}")
        assert status == 200, body
        assert body["status"] == want, (states, body)
        assert body["requestid"] == str(cid) and body["pin"]["name"] == "g"
    env.cluster.errors[cid] = "context deadline exceeded"
    st.update({a: TrackerStatus.PIN_ERROR, b: TrackerStatus.PINNED})
    status, body = await env.call("GET", f"/pins/{cid}")
    assert body["status"] == "failed"
    assert body["info"]["status_details"] == "context deadline exceeded"
    # the delegates are the nodes that hold or fetch the pin, never the remote peer c
    assert body["delegates"] == [f"{env.cluster.addr(p)}/p2p/{env.cluster.ipfs[p]}" for p in (a, b)]
    assert str(env.cluster.ipfs[c]) not in json.dumps(body["delegates"])


async def test_get_unknown_and_bad_request_ids(env: Env) -> None:
    status, body = await env.call("GET", f"/pins/{cid_of(b'nothing')}")
    assert status == 404
    assert_failure(body, "NOT_FOUND", "pin not found")
    status, body = await env.call("GET", "/pins/not-a-cid")
    assert status == 400
    assert_failure(body, "BAD_REQUEST", "requestID")


async def test_delete(env: Env) -> None:
    cid = cid_of(b"d")
    await env.call("POST", "/pins", {"cid": str(cid)})
    status, body = await env.call("DELETE", f"/pins/{cid}")
    assert (status, body) == (202, None)
    assert cid not in env.cluster.pinset
    status, body = await env.call("DELETE", f"/pins/{cid}")
    assert status == 404
    assert_failure(body, "NOT_FOUND")
    status, body = await env.call("DELETE", "/pins/xyz")
    assert status == 400


async def test_cluster_failure_is_500_in_spec_shape(env: Env) -> None:
    env.cluster.fail_status = True
    status, body = await env.call("GET", f"/pins/{cid_of(b'z')}")
    assert status == 500
    assert_failure(body, "INTERNAL_SERVER_ERROR", "unreachable")
    status, body = await env.call("GET", "/pins")
    assert status == 500
    assert_failure(body, "INTERNAL_SERVER_ERROR", "unreachable")


# --- replace ---------------------------------------------------------------------------------------------
async def test_replace_moves_the_request_to_the_new_cid(env: Env) -> None:
    old, new = cid_of(b"v1"), cid_of(b"v2")
    await env.call("POST", "/pins", {"cid": str(old), "name": "site", "meta": {"v": "1"}})
    allocs = env.cluster.pinset[old].allocations
    status, body = await env.call("POST", f"/pins/{old}", {"cid": str(new), "name": "site", "meta": {"v": "2"}})
    assert status == 202, body
    assert body["requestid"] == str(new) and body["status"] == "queued"
    assert body["pin"] == {"cid": str(new), "name": "site", "meta": {"v": "2"}}
    names = [c[0] for c in env.cluster.calls]
    assert names == ["pin", "pin_update", "pin", "unpin"]
    assert env.cluster.calls[1][1][:2] == (old, new)
    assert old not in env.cluster.pinset
    pin = env.cluster.pinset[new]
    assert pin.metadata == {"v": "2"} and pin.allocations == allocs  # same peers: common blocks stay
    status, body = await env.call("GET", f"/pins/{old}")
    assert status == 404


async def test_replace_without_option_changes_is_one_update(env: Env) -> None:
    old, new = cid_of(b"w1"), cid_of(b"w2")
    await env.call("POST", "/pins", {"cid": str(old)})
    status, _ = await env.call("POST", f"/pins/{old}", {"cid": str(new)})
    assert status == 202
    assert [c[0] for c in env.cluster.calls] == ["pin", "pin_update", "unpin"]
    assert env.cluster.pinset[new].pin_update == old


async def test_replace_same_cid_updates_options_and_keeps_the_pin(env: Env) -> None:
    cid = cid_of(b"same")
    await env.call("POST", "/pins", {"cid": str(cid), "name": "a"})
    status, body = await env.call("POST", f"/pins/{cid}", {"cid": str(cid), "name": "b"})
    assert status == 202 and body["pin"]["name"] == "b"
    assert env.cluster.pinset[cid].name == "b"
    assert "unpin" not in [c[0] for c in env.cluster.calls]


async def test_replace_unknown_request_is_404(env: Env) -> None:
    status, body = await env.call("POST", f"/pins/{cid_of(b'ghost')}", {"cid": str(cid_of(b'new'))})
    assert status == 404
    assert_failure(body, "NOT_FOUND")
    status, body = await env.call("POST", f"/pins/{cid_of(b'ghost')}", raw=b"{")
    assert status == 400


# --- list --------------------------------------------------------------------------------------------------
async def populate(env: Env, n: int, status: TrackerStatus = TrackerStatus.PINNED) -> list[CID]:
    cids = []
    for i in range(n):
        cid = cid_of(f"item{i}".encode())
        await env.call("POST", "/pins", {"cid": str(cid), "name": f"File-{i}.txt",
                                          "meta": {"app": "a" if i % 2 else "b", "i": str(i)}})
        for p in env.cluster.members[:2]:
            env.cluster.states[cid][p] = status
        cids.append(cid)
    return cids


async def test_list_defaults_newest_ten_pinned(env: Env) -> None:
    cids = await populate(env, 12)
    queued = cid_of(b"queued")
    await env.call("POST", "/pins", {"cid": str(queued)})
    status, body = await env.call("GET", "/pins")
    assert status == 200, body
    assert body["count"] == 12  # the queued one is not "successful": left out without a status filter
    assert [r["requestid"] for r in body["results"]] == [str(c) for c in reversed(cids)][:10]
    assert all(r["status"] == "pinned" for r in body["results"])
    assert ("status_all", RELEVANT) in env.cluster.calls  # one pushed-down filter, statuses mapped here


async def test_list_status_filters(env: Env) -> None:
    await populate(env, 3)
    q = cid_of(b"q")
    f = cid_of(b"f")
    await env.call("POST", "/pins", {"cid": str(q)})
    await env.call("POST", "/pins", {"cid": str(f)})
    env.cluster.states[f][env.cluster.members[0]] = TrackerStatus.PIN_ERROR
    for query, want in [
        ("status=queued", {str(q)}),
        ("status=failed", {str(f)}),
        ("status=queued,failed", {str(q), str(f)}),
        ("status=queued&status=failed", {str(q), str(f)}),
    ]:
        status, body = await env.call("GET", "/pins?" + query)
        assert status == 200, body
        assert {r["requestid"] for r in body["results"]} == want, query
        assert body["count"] == len(want)
    status, body = await env.call("GET", "/pins?status=queued,pinning,pinned,failed")
    assert body["count"] == 5
    for bad in ("status=bogus", "status=", "status=queued,done"):
        status, body = await env.call("GET", "/pins?" + bad)
        assert status == 400, bad
        assert_failure(body, "BAD_REQUEST", "'status'")


async def test_list_limit_and_before_pagination(env: Env) -> None:
    cids = await populate(env, 25)
    seen: list[str] = []
    query = "/pins?limit=7"
    while True:
        status, body = await env.call("GET", query)
        assert status == 200
        assert len(body["results"]) <= 7
        if not body["results"]:
            break
        seen += [r["requestid"] for r in body["results"]]
        query = "/pins?limit=7&before=" + body["results"][-1]["created"]
    assert seen == [str(c) for c in reversed(cids)]  # every item once, newest first
    for bad in ("0", "1001", "-1", "ten", "1.5"):
        status, body = await env.call("GET", "/pins?limit=" + bad)
        assert status == 400, bad
        assert_failure(body, "BAD_REQUEST", "'limit'")
    status, body = await env.call("GET", "/pins?limit=1000")
    assert status == 200 and len(body["results"]) == 25


async def test_list_after_and_before_are_strict(env: Env) -> None:
    cids = await populate(env, 5)
    _, all_ = await env.call("GET", "/pins")
    created = [r["created"] for r in all_["results"]]  # newest first
    status, body = await env.call("GET", f"/pins?after={created[3]}&before={created[0]}")
    assert [r["requestid"] for r in body["results"]] == [str(cids[3]), str(cids[2])]
    status, body = await env.call("GET", "/pins?after=yesterday")
    assert status == 400
    assert_failure(body, "BAD_REQUEST", "'after'")
    status, body = await env.call("GET", "/pins?before=2026-13-01T00:00:00Z")
    assert status == 400


async def test_list_name_match_modes(env: Env) -> None:
    await populate(env, 12)
    cases = [
        ("name=File-1.txt", 1),
        ("name=file-1.txt", 0),
        ("name=file-1.txt&match=iexact", 1),
        ("name=File-1&match=partial", 3),  # File-1, File-10, File-11
        ("name=file-1&match=partial", 0),
        ("name=FILE-1&match=ipartial", 3),
        ("name=File-1.txt&match=exact", 1),
    ]
    for query, count in cases:
        status, body = await env.call("GET", "/pins?" + query)
        assert status == 200, body
        assert body["count"] == count, query
    status, body = await env.call("GET", "/pins?name=x&match=fuzzy")
    assert status == 400
    assert_failure(body, "BAD_REQUEST", "'match'")
    status, body = await env.call("GET", "/pins?name=" + "n" * 256)
    assert status == 400


async def test_list_meta_filter(env: Env) -> None:
    await populate(env, 6)
    meta = json.dumps({"app": "a"})
    status, body = await env.call("GET", "/pins?meta=" + meta)
    assert body["count"] == 3
    assert all(r["pin"]["meta"]["app"] == "a" for r in body["results"])
    status, body = await env.call("GET", "/pins?meta=" + json.dumps({"app": "a", "i": "3"}))
    assert [r["pin"]["meta"]["i"] for r in body["results"]] == ["3"]
    status, body = await env.call("GET", "/pins?meta=" + json.dumps({"nope": "a"}))
    assert body == {"count": 0, "results": []}
    for bad in ("{", "[1]", json.dumps({"a": 1})):
        status, body = await env.call("GET", "/pins?meta=" + bad)
        assert status == 400, bad
        assert_failure(body, "BAD_REQUEST", "'meta'")


async def test_list_by_cid(env: Env) -> None:
    cids = await populate(env, 4)
    q = cid_of(b"queued")
    await env.call("POST", "/pins", {"cid": str(q)})
    unknown = cid_of(b"unknown")
    status, body = await env.call("GET", f"/pins?cid={cids[0]},{cids[2]},{unknown}")
    assert status == 200
    assert [r["requestid"] for r in body["results"]] == [str(cids[2]), str(cids[0])]
    status, body = await env.call("GET", f"/pins?cid={cids[1]}&cid={q}&status=queued,pinned")
    assert {r["requestid"] for r in body["results"]} == {str(cids[1]), str(q)}
    status, body = await env.call("GET", f"/pins?cid={cids[1]}&name=nomatch")
    assert body["count"] == 0  # the other filters still apply
    status, body = await env.call("GET", "/pins?cid=bad")
    assert status == 400
    assert_failure(body, "BAD_REQUEST", "'cid'")


async def test_list_counts_everything_but_keeps_only_limit(env: Env) -> None:
    """A large pinset: the count is exact and the results are the newest ones."""
    c = env.cluster
    n = 3000
    for i in range(n):
        cid = cid_of(f"bulk{i}".encode())
        # created times out of CID order, so the heap (not the stream order) decides
        ts = T0 + timedelta(seconds=(i * 7919) % n)
        c.pinset[cid] = Pin.with_options(cid, PinOptions(), allocations=tuple(c.members[:2]), timestamp=ts)
        c.states[cid] = dict.fromkeys(c.members[:2], TrackerStatus.PINNED)
    status, body = await env.call("GET", "/pins?limit=5")
    assert status == 200
    assert body["count"] == n
    assert [r["created"] for r in body["results"]] == [
        (T0 + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ") for s in range(n - 1, n - 6, -1)
    ]


# --- server machinery --------------------------------------------------------------------------------------
async def test_router_edges(env: Env) -> None:
    status, body = await env.call("GET", "/nothing")
    assert status == 404
    assert_failure(body, "NOT_FOUND", "not found")
    status, body = await env.call("PUT", "/pins")
    assert status == 405
    status, _ = await env.call("GET", "/pins/?limit=2")
    assert status == 307
    status, body = await env.call("GET", "/health")
    assert (status, body) == (204, None)
    status, body = await env.call("POST", "/token")
    assert status == 401
    assert_failure(body, "UNAUTHORIZED")


@pytest.fixture
async def auth_env() -> AsyncIterator[Env]:
    cluster = FakeCluster()
    api = PinSvcAPI(cluster, HTTPAPISettings(listen=(Multiaddr("/ip4/127.0.0.1/tcp/0"),),  # type: ignore[arg-type]
                                             basic_auth_credentials=USERS))
    await api.start()
    async with aiohttp.ClientSession() as session:
        yield Env(api, cluster, session)
    await api.stop()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_auth_bearer_token_flow(auth_env: Env) -> None:
    env = auth_env
    resp = await env.session.get(env.api.url + "/pins")
    body = await resp.json()
    assert resp.status == 401
    assert_failure(body, "UNAUTHORIZED", "no auth provided")
    assert sorted(resp.headers.getall("WWW-Authenticate")) == [
        'Basic realm="Restricted IPFS Cluster API"', 'Bearer realm="Restricted IPFS Cluster API"']
    status, body = await env.call("GET", "/pins", headers=basic("admin", "wrong"))
    assert status == 401
    assert_failure(body, "UNAUTHORIZED", "access denied")
    status, body = await env.call("GET", "/pins", headers={"Authorization": "Bearer not.a.token"})
    assert status == 401
    assert_failure(body, "UNAUTHORIZED", "invalid token")
    status, body = await env.call("POST", "/token", headers=basic("admin", "s3cret"))
    assert status == 200
    env.headers = {"Authorization": "Bearer " + body["token"]}
    cid = cid_of(b"authed")
    status, body = await env.call("POST", "/pins", {"cid": str(cid)})
    assert status == 202
    env.cluster.states[cid].update(dict.fromkeys(env.cluster.members[:2], TrackerStatus.PINNED))
    status, body = await env.call("GET", "/pins")
    assert status == 200 and body["count"] == 1
    status, _ = await env.call("GET", "/pins", headers=basic("admin", "s3cret"))
    assert status == 200
    env.headers = {}
    status, _ = await env.call("GET", "/health")
    assert status == 204


async def test_from_config_section() -> None:
    from pincluster.config.sections import PinSvcAPIConfig

    cfg = PinSvcAPIConfig()
    api = PinSvcAPI.from_config(FakeCluster(), cfg, "/tmp")  # type: ignore[arg-type]
    assert [str(a) for a in api.settings.listen] == ["/ip4/127.0.0.1/tcp/9097"]
    assert api.settings.basic_auth_credentials is None


async def test_unix_socket_cors_and_header_limit(tmp_path: Any) -> None:
    sock = tmp_path / "pinsvc.sock"
    cluster = FakeCluster()
    api = PinSvcAPI(cluster, HTTPAPISettings(  # type: ignore[arg-type]
        listen=(Multiaddr("/ip4/127.0.0.1/tcp/0"), Multiaddr(f"/unix{sock}")),
        cors_allowed_methods=("GET", "POST"), headers={"X-Served-By": ("pincluster",)}))
    await api.start()
    try:
        unix = aiohttp.UnixConnector(path=str(sock))
        async with aiohttp.ClientSession(connector=unix) as s, \
                s.post("http://x/pins", json={"cid": str(cid_of(b"unix"))}) as resp:
            assert resp.status == 202
            assert resp.headers["X-Served-By"] == "pincluster"
        async with aiohttp.ClientSession() as s:
            async with s.options(api.url + "/pins", headers={"Origin": "http://app.example",
                                                             "Access-Control-Request-Method": "POST"}) as resp:
                assert resp.status == 204
                assert resp.headers["Access-Control-Allow-Origin"] in ("*", "http://app.example")
            async with s.get(api.url + "/pins", headers={"X-Big": "x" * 9000}) as resp:
                assert resp.status == 431
    finally:
        await api.stop()


async def test_cross_site_requests_the_policy_does_not_allow_are_refused(env: Env) -> None:
    """The REST API's rule (the default policy allows GET only): a web page's POST or DELETE is refused with
    the Pinning Service's error body and nothing is pinned; reads and programs are served."""
    cid = cid_of(b"csrf")
    status, body = await env.call("POST", "/pins", {"cid": str(cid)}, headers={"Origin": "https://evil.example"})
    assert status == 403
    assert_failure(body, "FORBIDDEN", "cross-site request refused: origin https://evil.example may not send POST")
    assert cid not in env.cluster.pinset
    status, _ = await env.call("GET", "/pins", headers={"Origin": "https://evil.example"})
    assert status == 200
    status, _ = await env.call("POST", "/pins", {"cid": str(cid)})
    assert status == 202 and cid in env.cluster.pinset
    status, _ = await env.call("DELETE", f"/pins/{cid}", headers={"Origin": "https://evil.example"})
    assert status == 403 and cid in env.cluster.pinset
