"""IPFS Cluster's own ``ipfs-cluster-ctl`` 1.1.6 (the Go original, built by ``tests/gocluster.sh``) against a
pincluster cluster, side by side with ours: "tools written for IPFS Cluster must work against ours", and ours
must print what the original prints.

The cluster's REST API is served over HTTPS with Basic Auth, so every command also goes through TLS and the
credentials check, as a careful deployment would run it; both ctls get ``--basic-auth`` (which implies
``--https``) and ``--no-check-certificate`` (the certificate is self-signed).

Each command runs with the Go ctl, then with ours; stdout, stderr and the exit code must be equal. The only
things allowed to differ are instants: a status's time is the moment the peer answered, and a pin's ``Added``
time is that of the command that made it (``_same_but_times``). Where the two differ on purpose (pincluster
refuses input that Go takes silently, or says more in an error), the test says so and checks ours.
Skipped with ``PINCLUSTER_NO_GO_CLUSTER=1``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.certs import make_cert
from tests.integration.cluster_harness import Peer, clean_env, running_cluster, wait_for

from pincluster.localnet import CTL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kubo import go_cluster_binary  # type: ignore[import-not-found,unused-ignore]

pytestmark = pytest.mark.timeout(300)

USER, PASSWORD = "admin", "correct horse battery staple"
AUTH = ("--basic-auth", f"{USER}:{PASSWORD}", "--no-check-certificate")

# RFC 3339 instants (statuses, JSON) and the ctl's "2026-11-26 18:20:59" (a pin's Added and Exp)
_TIMES = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@pytest.fixture(scope="module")
def go_ctl() -> Path:
    return go_cluster_binary("ipfs-cluster-ctl")


@pytest.fixture(scope="module")
def cluster(go_ctl: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Peer]]:
    root = tmp_path_factory.mktemp("goctl")
    cert_file, key_file = make_cert(str(root))
    rest = {"api.restapi.basic_auth_credentials": {USER: PASSWORD}, "api.restapi.ssl_cert_file": cert_file,
            "api.restapi.ssl_key_file": key_file}
    with running_cluster(root, 3, service_changes={**rest, "ipfs_connector.ipfshttp.pin_timeout": "3s",
                                                   "cluster.pin_recover_interval": "10m"}) as peers:
        yield peers


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file of 300 KB (several chunks) and a folder with a hidden file and a subfolder."""
    d = tmp_path_factory.mktemp("goctl-files")
    (d / "f1.bin").write_bytes(bytes(range(256)) * 1200)
    (d / "d1" / "sub").mkdir(parents=True)
    (d / "d1" / "a.txt").write_text("hello\n")
    (d / "d1" / ".hidden").write_text("hidden\n")
    (d / "d1" / "sub" / "b.txt").write_text("world\n")
    return d


Run = tuple[int, str, str]


def run(binary: Path | str, peer: Peer, *args: str, cwd: Path | None = None, auth: bool = True) -> Run:
    res = subprocess.run([str(binary), "--host", peer.rest_multiaddr, *(AUTH if auth else ()), *args],
                         capture_output=True, text=True, timeout=120, env=clean_env(), cwd=cwd)
    return res.returncode, res.stdout, res.stderr


def both(go_ctl: Path, peer: Peer, *args: str, cwd: Path | None = None, auth: bool = True) -> tuple[Run, Run]:
    return run(go_ctl, peer, *args, cwd=cwd, auth=auth), run(CTL, peer, *args, cwd=cwd, auth=auth)


def _same(go: Run, ours: Run, args: tuple[str, ...]) -> None:
    assert ours == go, f"ipfs-cluster-ctl {' '.join(args)}:\nGo:   {go!r}\nours: {ours!r}"


def _same_but_times(go: Run, ours: Run, args: tuple[str, ...]) -> None:
    _same((go[0], _TIMES.sub("<time>", go[1]), go[2]), (ours[0], _TIMES.sub("<time>", ours[1]), ours[2]), args)


_NUMBERS = re.compile(r" *\d+(?:\.\d+)?(?:e[+-]?\d+)?(?: [kMGTPE]?B\b)?")


def _numbers_masked(r: Run) -> Run:
    return r[0], _NUMBERS.sub(" N", r[1]), r[2]


def check(go_ctl: Path, peer: Peer, *args: str, cwd: Path | None = None, times: bool = False) -> Run:
    """Run ``args`` with both ctls and require the same result (instants aside with ``times``); returns ours."""
    go, ours = both(go_ctl, peer, *args, cwd=cwd)
    (_same_but_times if times else _same)(go, ours, args)
    return ours


def _cids(out: str) -> list[str]:
    return [line.split()[1] for line in out.splitlines() if line.startswith("added ")]


def test_add_prints_the_same_cids(go_ctl: Path, cluster: list[Peer], files: Path) -> None:
    """The Go ctl uploads (multipart, its own encoding of folders) and our peer imports: the same lines, CIDs
    included, as our ctl gets for every layout option."""
    p = cluster[0]
    for opts in ([], ["--cid-version", "1"], ["--raw-leaves"], ["-w"], ["--chunker", "size-1024"],
                 ["--chunker", "rabin"], ["--hash", "sha2-512"], ["--layout", "trickle"], ["-q"],
                 ["--no-pin"], ["--rmin", "2", "--rmax", "2", "--name", "two"], ["--metadata", "k=v"],
                 ["--expire-in", "1h"], ["--local"]):
        ours = check(go_ctl, p, "add", *opts, "f1.bin", cwd=files)
        assert ours[0] == 0 and (opts == ["-q"] or _cids(ours[1])), (opts, ours)
    ours = check(go_ctl, p, "--enc", "json", "add", "--no-stream", "f1.bin", cwd=files)
    assert json.loads(ours[1])[0]["name"] == "f1.bin"
    for opts in ([], ["--hidden"], ["-Q"], ["--no-stream"], ["--wrap-with-directory"]):
        check(go_ctl, p, "add", "-r", *opts, "d1", cwd=files)
    ours = check(go_ctl, p, "add", "--wait", "f1.bin", cwd=files)
    assert ours[0] == 0 and len(_cids(ours[1])) == 1
    # a peer ID that does not decode: Go's `add` drops it and adds; ours refuses, as both do for `pin add`
    go, ours = both(go_ctl, p, "add", "--allocations", "nope", "f1.bin", cwd=files)
    assert go[0] == 0 and ours == (1, "", "error decoding allocations: some peer IDs could not be decoded\n")
    # both refuse a local file with --nocopy (the filestore only takes URLs here), without a request
    go, ours = both(go_ctl, p, "add", "--nocopy", "f1.bin", cwd=files)
    assert go[0] == ours[0] == 1
    assert ours[2] == "error : nocopy option is only valid for URLs\n" and go[2].endswith(ours[2])


def test_listings_and_statuses_read_the_same(go_ctl: Path, cluster: list[Peer], files: Path) -> None:
    p = cluster[1]
    (cid,) = _cids(run(CTL, p, "add", "--rmin", "2", "--rmax", "2", "--name", "listed", "f1.bin", cwd=files)[1])
    wait_for(lambda: run(CTL, p, "status", cid)[1].count("PINNED"), "2 peers pinned", done=lambda n: n == 2)
    for args in (("id",), ("peers", "ls"), ("version",), ("pin", "ls"), ("pin", "ls", cid),
                 ("pin", "ls", "--filter", "pin"), ("pin", "ls", "--filter", "meta-pin"), ("health", "graph"),
                 ("health", "graph", "--all-ipfs-peers"), ("health", "metrics"), ("health", "alerts"),
                 ("commands",)):
        if args == ("commands",):  # ours has one command more, `sync` (IPFS Cluster 1.x removed it)
            go, ours = both(go_ctl, p, *args)
            assert ours[1].replace("ipfs-cluster-ctl sync\n", "") == go[1] and ours[0] == go[0] == 0
            continue
        check(go_ctl, p, *args)
        check(go_ctl, p, "--enc", "json", *args)
    # the traffic counts move between the two commands (Raft heartbeats, metrics): the same protocols, lines
    # and JSON, numbers and their units aside
    for args in (("health", "bandwidth"), ("--enc", "json", "health", "bandwidth")):
        go, ours = both(go_ctl, p, *args)
        assert "/pincluster/raft/2" in ours[1] and "/pincluster/rpc/3.0" in ours[1]
        _same(_numbers_masked(go), _numbers_masked(ours), args)
    for args in (("status",), ("status", cid), ("status", "--local"), ("status", "--filter", "pinned,remote"),
                 ("status", "--local", "--filter", "pin_error"), ("status", cid, cid), ("recover", cid),
                 ("recover",), ("recover", "--local")):
        check(go_ctl, p, *args, times=True)
        check(go_ctl, p, "--enc", "json", *args, times=True)


def test_pin_commands_change_the_same_way(go_ctl: Path, cluster: list[Peer], files: Path) -> None:
    """Each change made by the Go ctl, then again by ours (the same pin again changes nothing): the same
    answers; CID arguments may be paths, and a CID followed by a path is read under /ipfs/."""
    p = cluster[2]
    folder = run(CTL, p, "add", "-Q", "-r", "d1", cwd=files)[1].strip()
    (a_txt,) = _cids(run(CTL, p, "add", "--no-pin", "d1/a.txt", cwd=files)[1])
    check(go_ctl, p, "pin", "add", "--no-status", "--rmin", "1", "--rmax", "2", "-n", "x", "--metadata", "a=b",
          a_txt, times=True)
    listed = json.loads(run(CTL, p, "--enc", "json", "pin", "ls", a_txt)[1])
    assert (listed["name"], listed["metadata"], listed["replication_factor_max"]) == ("x", {"a": "b"}, 2)
    for args in (("pin", "add", "--no-status", f"/ipfs/{folder}/sub"),
                 ("pin", "add", "--no-status", f"{folder}/sub"),
                 ("pin", "add", "--no-status", "--expire-in", "2h", a_txt),
                 ("pin", "update", "--no-status", a_txt, f"{folder}/sub"),
                 ("pin", "add", a_txt),
                 ("pin", "add", "--wait", a_txt)):
        check(go_ctl, p, *args, times=True)
    # an unpin, made by each ctl in turn (pinned again in between)
    args = ("pin", "rm", "--no-status", f"{folder}/sub")
    results = []
    for binary in (go_ctl, CTL):
        assert run(CTL, p, "pin", "add", "--no-status", f"/ipfs/{folder}/sub")[0] == 0
        results.append(run(binary, p, *args))
    _same_but_times(*results, args)
    # the second unpin of the same CID: both get the API's 404, printed the same way (exit 2)
    go, ours = both(go_ctl, p, "pin", "rm", "--no-status", f"{folder}/sub")
    _same(go, ours, ("pin", "rm"))
    assert ours[0] == 2 and "Code: 404" in ours[1]


def test_errors_read_the_same(go_ctl: Path, cluster: list[Peer]) -> None:
    p = cluster[0]
    unknown_peer = "12D3KooWQ5vDz8b8rdmYR6T2oiqx8wVEjFrAEmq3zTmMbGUJDsaP"
    unpinned = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    for args in (("pin", "rm", unpinned), ("pin", "ls", unpinned), ("peers", "rm", unknown_peer),
                 ("pin", "add", "--rmin", "3", "--rmax", "2", unpinned), ("pin", "add", "-r", "5", unpinned),
                 ("pin", "add", "/ipns/name.invalid"),
                 ("status", "--filter", "bogus"), ("pin", "add", "--expire-in", "soon", unpinned),
                 ("pin", "add", "--allocations", "nope", unpinned), ("add",), ("peers", "add", "x"), ("bogus",),
                 ("health", "metrics", "bogus")):
        check(go_ctl, p, *args)
        check(go_ctl, p, "--enc", "json", *args)
    # over HTTPS, no credentials or a wrong password: the API's 401, printed the same way
    for creds in (("--https", "--no-check-certificate"), ("--basic-auth", f"{USER}:wrong", "--no-check-certificate")):
        go, ours = both(go_ctl, p, *creds, "id", auth=False)
        _same(go, ours, creds)
        assert ours[0] == 2 and "Code: 401" in ours[1]
    # plain HTTP to the HTTPS port: a transport error (code 0) in both; the reason in each one's words, ours
    # with the hint Go's "EOF" lacks
    go, ours = both(go_ctl, p, "id", auth=False)
    assert go[0] == ours[0] == 1
    assert go[1].startswith("An error occurred:\n  Code: 0\n  Message: ")
    assert ours[1] == (f"An error occurred:\n  Code: 0\n  Message: {p.rest.replace('https', 'http')} closed the "
                       "connection without answering (an HTTPS server answers plain HTTP that way: if it is one, use "
                       "https, e.g. ctl --https)\n")
    # Go takes these silently; ours refuses them with a message (a bad CID says why it is bad)
    go, ours = both(go_ctl, p, "pin", "add", "--no-status", "--mode", "bogus", unpinned)
    assert (go[0], ours) == (0, (1, "", "error parsing mode: unknown pin mode 'bogus': use recursive or direct\n"))
    go, ours = both(go_ctl, p, "pin", "ls", "--filter", "bogus")
    assert go[0] == 0 and ours[0] == 2 and "invalid filter value" in ours[1]
    go, ours = both(go_ctl, p, "pin", "add", "QmBad")
    assert go[0] == ours[0] == 1
    assert go[2].endswith('error : invalid path "/ipfs/QmBad": invalid cid: selected encoding not supported\n')
    assert ours[2].startswith('error : invalid path "/ipfs/QmBad": invalid CID ')
    run(CTL, p, "pin", "rm", "--no-status", unpinned)  # pinned by Go's `--mode bogus`
