"""``API.Authorizations``: the embedded node's RPC API asks for a secret as kubo 0.42 does, and kubo's own CLI
(``--api-auth``), ours, and a cluster peer on top of it get in with the right one.

The same requests go to kubo and to our node, both configured with the same users; status and, for refusals,
body and content type must be the same. Users: alice may run ``pin/ls`` only, bob everything (a bearer token),
carol everything (``basic:USER:PASSWORD``), dave everything (``basic:`` and the base64 of ``dave:pw``).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.cluster_harness import ctl, init_peers, start_cluster, stop_all, wait_for

from pincluster.localnet import SERVICE, clean_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from embedded import EmbeddedNode, beside_kubo
from kubo import KuboDaemon, kubo_disabled

pytestmark = pytest.mark.timeout(180)

AUTHORIZATIONS = {
    "alice": {"AuthSecret": "bearer:alice-token", "AllowedPaths": ["/api/v0/pin/ls"]},
    "bob": {"AuthSecret": "bob-token", "AllowedPaths": ["/api/v0"]},
    "carol": {"AuthSecret": "basic:carol:pw", "AllowedPaths": ["/api/v0"]},
    "dave": {"AuthSecret": "basic:" + base64.b64encode(b"dave:pw").decode(), "AllowedPaths": ["/api/v0"]},
}
DENIED = (b"Kubo RPC Access Denied: Please provide a valid authorization token as defined in the "
          b"API.Authorizations configuration.\n")


def _basic(user_pass: str) -> str:
    return "Basic " + base64.b64encode(user_pass.encode()).decode()


CASES: list[tuple[str, str, dict[str, str]]] = [
    ("POST", "/api/v0/version", {}),
    ("POST", "/api/v0/id", {}),
    ("POST", "/api/v0/id", {"Authorization": "Bearer wrong"}),
    ("POST", "/api/v0/version", {"Authorization": "Bearer alice-token"}),  # version: any valid secret
    ("POST", "/api/v0/id", {"Authorization": "Bearer alice-token"}),
    ("POST", "/api/v0/pin/ls", {"Authorization": "Bearer alice-token"}),
    ("POST", "/api/v0/id", {"Authorization": "Bearer bob-token"}),
    ("POST", "/api/v0/id", {"Authorization": "bearer bob-token"}),  # the header must match exactly
    ("POST", "/api/v0/id", {"Authorization": "bob-token"}),
    ("POST", "/api/v0/id", {"Authorization": _basic("carol:pw")}),
    ("POST", "/api/v0/id", {"Authorization": _basic("carol:wrong")}),
    ("POST", "/api/v0/id", {"Authorization": _basic("dave:pw")}),
    ("GET", "/api/v0/id", {"Authorization": "Bearer bob-token"}),
    ("GET", "/api/v0/id", {}),
    ("OPTIONS", "/api/v0/id", {"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}),
    ("POST", "/api/v0/id", {"Authorization": "Bearer bob-token", "Origin": "http://evil.example"}),
]


def _request(url: str, method: str, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _configure(cfg: dict[str, Any]) -> None:
    cfg.setdefault("API", {})["Authorizations"] = AUTHORIZATIONS


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[KuboDaemon, EmbeddedNode]]:
    if kubo_disabled():
        pytest.skip("PINCLUSTER_NO_KUBO=1")
    with beside_kubo(tmp_path, {"Authorizations": AUTHORIZATIONS}, "Bearer bob-token") as both:
        yield both


@pytest.mark.kubo
def test_requests_get_kubos_answers(pair: tuple[KuboDaemon, EmbeddedNode]) -> None:
    kubo, ours = pair
    differences = []
    for method, path, headers in CASES:
        k = _request(kubo.api_url, method, path, headers)
        o = _request(ours.api_url, method, path, headers)
        same = k[0] == o[0] and (k[0] == 200 or (k[1], k[2]) == (o[1], o[2]))
        if not same:
            differences.append(f"{method} {path} {headers}:\n  kubo {k[0]} {k[1]} {k[2][:90]!r}\n"
                               f"  ours {o[0]} {o[1]} {o[2][:90]!r}")
    assert not differences, "\n".join(differences)
    # the secrets never leave the node: `config show` empties API.Authorizations, as kubo's does
    bob = {"Authorization": "Bearer bob-token"}
    shown = [json.loads(_request(d.api_url, "POST", "/api/v0/config/show", bob)[2]) for d in (kubo, ours)]
    assert shown[0]["API"]["Authorizations"] == shown[1]["API"]["Authorizations"] == {}
    got = _request(ours.api_url, "POST", "/api/v0/config?arg=API.Authorizations", bob)
    assert b"bob-token" not in got[2]  # kubo's `config API.Authorizations` shows them: ours does not
    assert _request(ours.api_url, "POST", "/api/v0/id", {})[2] == DENIED
    assert _request(ours.api_url, "POST", "/api/v0/id", {"Authorization": "Bearer bob-token"})[0] == 200


@pytest.mark.kubo
def test_kubos_cli_and_ours_log_in_with_api_auth(pair: tuple[KuboDaemon, EmbeddedNode]) -> None:
    """kubo's ``ipfs --api-auth`` against our node, and ``pincluster-ipfs --api-auth``; without the secret,
    both say kubo's refusal."""
    kubo, ours = pair
    ipfs = [str(kubo.binary), "--api", ours.api_multiaddr]
    env = {**kubo.env}
    ok = subprocess.run([*ipfs, "--api-auth", "bearer:bob-token", "id", "-f", "<id>"], env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == ours.peer_id, ok.stderr
    ok = subprocess.run([*ipfs, "--api-auth", "basic:carol:pw", "id", "-f", "<id>"], env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == ours.peer_id, ok.stderr
    refused = subprocess.run([*ipfs, "--api-auth", "bearer:alice-token", "id"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode != 0 and "Kubo RPC Access Denied" in refused.stderr

    mine = [sys.executable, "-m", "pincluster.ipfs.cli", "--api", ours.api_multiaddr]
    ok = subprocess.run([*mine, "--api-auth", "bearer:bob-token", "id"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ID"] == ours.peer_id, ok.stderr
    refused = subprocess.run([*mine, "id"], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "Kubo RPC Access Denied" in refused.stderr
    bad = subprocess.run([*mine, "--api-auth", "digest:x", "id"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--api-auth" in bad.stderr and "bearer:TOKEN" in bad.stderr


def test_a_cluster_peer_reaches_its_embedded_node_that_requires_authorization(tmp_path: Path) -> None:
    """A peer whose embedded node has ``API.Authorizations`` pins through it with the secret of a user allowed
    every command, while the node's API refuses anyone without one; a node config with no such user stops the
    daemon with what to do."""
    (peer,) = init_peers(tmp_path / "ok", 1)
    cfg_path = peer.folder / "ipfs" / "config"
    cfg = json.loads(cfg_path.read_text())
    _configure(cfg)
    cfg_path.write_text(json.dumps(cfg))
    start_cluster([peer])
    try:
        added = ctl(peer, "add", "--quieter", str(_file(tmp_path)))
        cid = added.stdout.strip()
        wait_for(lambda: "PINNED" in ctl(peer, "status", cid).stdout, "the pin on the node", 30)
        api = cfg["Addresses"]["API"]
        url = "http://127.0.0.1:" + api.rsplit("/", 1)[1]
        assert _request(url, "POST", f"/api/v0/pin/ls?arg={cid}", {})[:1] == (403,)
        status, _, body = _request(url, "POST", f"/api/v0/pin/ls?arg={cid}", {"Authorization": "Bearer bob-token"})
        assert status == 200 and json.loads(body)["Keys"][cid]["Type"] == "recursive"
        assert "the cluster uses user" in peer.log()
        svc = json.loads((peer.folder / "service.json").read_text())
        proxy = "http://127.0.0.1:" + svc["api"]["ipfsproxy"]["listen_multiaddress"].rsplit("/", 1)[1]
        # forwarded to the node with the client's own header, as kubo would be asked
        assert _request(proxy, "POST", "/api/v0/id", {})[::2] == (403, DENIED)
        assert _request(proxy, "POST", "/api/v0/id", {"Authorization": "Bearer bob-token"})[0] == 200
        # hijacked: the cluster answers, reaching the node with its own secret
        status, _, body = _request(proxy, "POST", f"/api/v0/pin/ls?arg={cid}", {})
        assert status == 200 and json.loads(body)["Keys"][cid]["Type"] == "recursive"
    finally:
        stop_all([peer])

    (locked,) = init_peers(tmp_path / "locked", 1)
    cfg_path = locked.folder / "ipfs" / "config"
    cfg = json.loads(cfg_path.read_text())
    cfg.setdefault("API", {})["Authorizations"] = {"alice": AUTHORIZATIONS["alice"]}
    cfg_path.write_text(json.dumps(cfg))
    res = subprocess.run([SERVICE, "-c", str(locked.folder), "daemon"], capture_output=True, text=True,
                         timeout=120, stdin=subprocess.DEVNULL, env=clean_env())
    assert res.returncode != 0
    assert "API.Authorizations" in res.stderr and '"AllowedPaths": ["/api/v0"]' in res.stderr, res.stderr[-2000:]


def _file(tmp_path: Path) -> Path:
    f = tmp_path / "data.txt"
    f.write_bytes(b"kept on a node that asks for a secret\n" * 100)
    return f
