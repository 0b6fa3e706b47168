"""IPFS Cluster's own daemon (Go ``ipfs-cluster-service`` 1.1.6 on a real kubo) and ours (embedded IPFS node),
each a one-peer cluster made by its own ``init``, asked the same things by Go's ``ipfs-cluster-ctl``: the
answers must read the same once what differs between any two clusters is masked (peer IDs and names, ports,
instants). This checks our REST API's texts, codes and shapes against the original server, not only against
the spec. Where ours answers differently on purpose, the test says so and checks ours.
Skipped with ``PINCLUSTER_NO_GO_CLUSTER=1`` or ``PINCLUSTER_NO_KUBO=1``.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.cluster_harness import isolate_go_peer, wait_for

from pincluster.localnet import SERVICE, clean_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kubo import KuboDaemon, go_cluster_binary, kubo_binary  # type: ignore[import-not-found,unused-ignore]

pytestmark = pytest.mark.timeout(180)

_MASKS = [
    (re.compile(r"12D3KooW[1-9A-HJ-NP-Za-km-z]{44}"), "<peer>"),
    (re.compile(r"\b12\*[1-9A-HJ-NP-Za-km-z]{6}\b"), "<short>"),  # health graph's abbreviated IDs
    (re.compile(r"\d{4}-\d\d-\d\d[T ][\d:.]+Z?"), "<time>"),
    (re.compile(r"/tcp/\d+"), "/tcp/<port>"),
    (re.compile(r"\b(gopeer|pypeer)\b"), "<name>"),
    (re.compile(r"Expires in: \d+ seconds"), "Expires in: <n> seconds"),
    # Go lists only global-unicast IPFS addresses here, so none on 127.0.0.1; ours lists loopback ones too
    # (they are what connects the IPFS nodes of peers on one machine): documented, and left out of the match
    (re.compile(r'\n *"ipfs_peer_addresses": \[[^\]]*\],'), ""),
]
UNKNOWN = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"


def _mask(text: str) -> str:
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


#: This module's own secret: Go's daemons find each other by mDNS, so two test modules running at once (the
#: suite's parallel workers) with one secret would connect their clusters.
SECRET = secrets.token_hex(32)


def _env(name: str) -> dict[str, str]:
    return clean_env({"CLUSTER_SECRET": SECRET, "CLUSTER_PEERNAME": name, "GOLOG_LOG_LEVEL": "error"})


def _start(binary: Path | str, folder: Path, name: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([str(binary), "-c", str(folder), "daemon"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=_env(name))


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    """(Go ctl, Go daemon's REST multiaddr, ours)."""
    go_ctl, go_service = go_cluster_binary("ipfs-cluster-ctl"), go_cluster_binary("ipfs-cluster-service")
    root = tmp_path_factory.mktemp("godaemon")
    kubo = KuboDaemon(root / "kubo", binary=kubo_binary()).start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        rest = []
        for binary, name, extra in ((go_service, "gopeer", ()), (SERVICE, "pypeer", ("--ipfs", "embedded"))):
            folder = root / name
            subprocess.run([str(binary), "-c", str(folder), "init", "--consensus", "raft", "--randomports", *extra],
                           env=_env(name), check=True, capture_output=True, timeout=60)
            cfg = isolate_go_peer(folder / "service.json") if name == "gopeer" else json.loads(
                (folder / "service.json").read_text())
            if name == "gopeer":
                cfg["ipfs_connector"]["ipfshttp"]["node_multiaddress"] = kubo.api_multiaddr
                (folder / "service.json").write_text(json.dumps(cfg, indent=2))
            else:  # the embedded node's swarm on loopback only, as kubo's test profile has it
                ipfs_cfg = json.loads((folder / "ipfs" / "config").read_text())
                ipfs_cfg["Addresses"]["Swarm"] = [a.replace("/0.0.0.0/", "/127.0.0.1/")
                                                  for a in ipfs_cfg["Addresses"]["Swarm"]]
                (folder / "ipfs" / "config").write_text(json.dumps(ipfs_cfg, indent=2))
            procs.append(_start(binary, folder, name, root / f"{name}.log"))
            rest.append(cfg["api"]["restapi"]["http_listen_multiaddress"])
        for proc, name, addr in zip(procs, ("gopeer", "pypeer"), rest, strict=True):
            def up(p: subprocess.Popen[bytes] = proc, a: str = addr) -> bool:
                """Serving, with its ping metric in (Go's add sends blocks to the peers that have one)."""
                return p.poll() is not None or "ping:" in _ctl(go_ctl, a, "health", "metrics", "ping")[1]

            wait_for(up, f"{name} ready", timeout=60)
            assert proc.poll() is None, (root / f"{name}.log").read_text()[-3000:]
        yield go_ctl, rest[0], rest[1]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(30)
        kubo.stop()


def _ctl(go_ctl: Path, host: str, *args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    res = subprocess.run([str(go_ctl), "--host", host, *args], capture_output=True, text=True, timeout=90, cwd=cwd)
    return res.returncode, res.stdout, res.stderr


def _both(hosts: tuple[Path, str, str], *args: str, cwd: Path | None = None) -> tuple[tuple[int, str, str], ...]:
    go_ctl, go, ours = hosts
    return tuple((rc, _mask(out), _mask(err)) for rc, out, err in (
        _ctl(go_ctl, go, *args, cwd=cwd), _ctl(go_ctl, ours, *args, cwd=cwd)))


def same(hosts: tuple[Path, str, str], *args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """The same answer; for a listing of several pins, the same lines in any order (Go's Raft state lists its
    in-memory map's order; ours lists by CID)."""
    go, ours = _both(hosts, *args, cwd=cwd)
    cmd = args[2:] if args[:1] == ("--enc",) else args
    if cmd[:1] == ("status",) or (cmd[:2] == ("pin", "ls") and cmd[2:3] in ((), ("--filter",))):
        go, ours = ((rc, "".join(sorted(out.splitlines(True))), err) for rc, out, err in (go, ours))
    assert ours == go, f"{' '.join(args)}:\nGo's daemon: {go!r}\nours:        {ours!r}"
    return ours


def test_the_two_daemons_answer_alike(hosts: tuple[Path, str, str], tmp_path: Path) -> None:
    (tmp_path / "r.bin").write_bytes(bytes(range(256)) * 40)
    for args in (("version",), ("id",), ("peers", "ls"), ("pin", "ls"), ("status",), ("health", "alerts"),
                 ("health", "graph"), ("add", "r.bin"), ("add", "--cid-version", "1", "r.bin"), ("pin", "ls"),
                 ("--enc", "json", "add", "--no-stream", "r.bin"), ("status", UNKNOWN), ("recover", UNKNOWN),
                 ("recover", "--local", UNKNOWN),
                 ("pin", "rm", UNKNOWN), ("pin", "ls", UNKNOWN), ("pin", "add", "-r", "5", UNKNOWN),
                 ("health", "metrics", "bogus"), ("health", "bandwidth"), ("status", "--filter", "pinned"),
                 ("status", "--filter", "error"), ("status", "--local"), ("status", "--filter", "queued,remote"),
                 ("pin", "ls", "--filter", "meta-pin"), ("status", UNKNOWN, UNKNOWN),
                 ("add", "--no-pin", "-w", "r.bin"), ("add", "--local", "--raw-leaves", "r.bin")):
        same(hosts, *args, cwd=tmp_path)
        # (JSON of id: the RPC protocol names differ; of bandwidth: the protocols differ, and their counts move)
        if args[0] not in ("add", "id", "peers", "--enc") and args[-1] != "bandwidth":
            same(hosts, "--enc", "json", *args, cwd=tmp_path)
    cid = _ctl(hosts[0], hosts[2], "add", "-Q", "r.bin", cwd=tmp_path)[1].strip()
    for host in hosts[1:]:
        wait_for(lambda h=host: "PINNED" in _ctl(hosts[0], h, "status", cid)[1], "pinned", timeout=30)
    for args in (("pin", "add", "--no-status", "--name", "n", "--metadata", "a=b", cid), ("status", cid),
                 ("pin", "ls", cid), ("pin", "rm", "--no-status", cid)):
        same(hosts, *args)
    # the same metrics, by name (the order of Go's list follows its map)
    go, ours = _both(hosts, "health", "metrics")
    assert sorted(ours[1].splitlines()) == sorted(go[1].splitlines()) and ours[0] == go[0] == 0


def test_where_ours_answers_otherwise_on_purpose(hosts: tuple[Path, str, str]) -> None:
    """Bad input is a 400 (Go: a 500 for a min above the max, or a direct pin over a recursive one), and
    removing a peer that is not in the peerset says so (Go: silence)."""
    for args in (("pin", "add", "--rmin", "3", "--rmax", "2", UNKNOWN),
                 ("pin", "add", "--no-status", UNKNOWN), ("pin", "add", "--mode", "direct", UNKNOWN)):
        go, ours = _both(hosts, *args)
        if args[2] == "--no-status":  # (pinned recursively on both, for the next one)
            assert go[0] == ours[0] == 0
            continue
        assert go[0] == ours[0] == 2 and "Code: 500" in go[1], (go, ours)
        assert ours[1].replace("Code: 400", "Code: 500") == go[1]
    go, ours = _both(hosts, "peers", "rm", "12D3KooWQ5vDz8b8rdmYR6T2oiqx8wVEjFrAEmq3zTmMbGUJDsaP")
    assert go == (0, "", "")
    assert ours == (2, "An error occurred:\n  Code: 404\n  Message: peer <peer> is not part of the cluster peerset\n",
                    "")


def _http(multiaddr: str, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, list[str]]]:
    parts = multiaddr.split("/")
    req = urllib.request.Request(f"http://{parts[2]}:{parts[4]}{path}", method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, got = r.status, r.headers
    except urllib.error.HTTPError as exc:
        status, got = exc.code, exc.headers
    names = ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
             "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers", "Access-Control-Max-Age", "Vary")
    return status, {n: got.get_all(n) for n in names if got.get_all(n)}


def test_cors_answers_are_gos(hosts: tuple[Path, str, str]) -> None:
    """Preflights and CORS headers as Go's rs/cors 1.11 writes them (exact methods, lower-case sorted request
    headers echoed as sent, one Vary value), with the default policy (every origin, GET only). The one
    difference on purpose: a web page's POST that the policy does not allow is refused (403) where Go runs it
    (docs/rest-api.md)."""
    _, go, ours = hosts
    app = "https://app.example"
    pre = {"Origin": app, "Access-Control-Request-Method": "GET"}
    cases = [
        ("OPTIONS", "/pins", pre),
        ("OPTIONS", "/pins", {**pre, "Access-Control-Request-Method": "POST"}),
        ("OPTIONS", "/pins", {**pre, "Access-Control-Request-Method": "get"}),
        ("OPTIONS", "/pins", {**pre, "Access-Control-Request-Headers": "content-type"}),
        ("OPTIONS", "/pins", {**pre, "Access-Control-Request-Headers": "content-type,x-requested-with"}),
        ("OPTIONS", "/pins", {**pre, "Access-Control-Request-Headers": "x-requested-with,content-type"}),
        ("OPTIONS", "/pins", {**pre, "Access-Control-Request-Headers": "Content-Type"}),
        ("OPTIONS", "/pins", {**pre, "Access-Control-Request-Headers": "origin"}),
        ("OPTIONS", "/pins", {**pre, "Access-Control-Request-Headers": "authorization"}),
        ("OPTIONS", "/pins", {"Access-Control-Request-Method": "GET"}),
        ("OPTIONS", "/id", {"Origin": app}),
        ("GET", "/id", {"Origin": app}),
        ("GET", "/id", {}),
    ]
    for method, path, headers in cases:
        assert _http(go, method, path, headers) == _http(ours, method, path, headers), (method, path, headers)
    pin = f"/pins/{UNKNOWN}?replication-min=1&replication-max=1"
    assert _http(go, "POST", pin, {"Origin": "https://evil.example"})[0] == 200  # Go pins for any web page
    assert _http(ours, "POST", pin, {"Origin": "https://evil.example"}) == (403, {"Vary": ["Origin"]})
