"""Rebuild this folder's fixture: a single-peer cluster whose Raft data was written by state format version 1.

Run it with the *old* code (commit f97b5ee, the last release writing format version 1) first on the path::

    git -C /tmp worktree add pincluster-v1 f97b5ee   # or: git clone … && git checkout f97b5ee
    PYTHONPATH=/tmp/pincluster-v1/src .venv/bin/python tests/data/state-v1/make_fixture.py tests/data/state-v1

It inits a peer (``init --randomports --ipfs embedded``), lowers ``compaction_min_entries`` so that the Raft
data holds a snapshot *and* a journal after it, starts the daemon, adds ~200 small files to the embedded node
(unpinned) and pins them through the REST API with varied options (names, replication factors, metadata,
expire_at / expire-in, user allocations, direct mode, origins) plus one ``pin-update``; then stops the daemon
with SIGTERM, runs ``state export`` and copies the peer folder, trimmed, into the destination.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

N = 200
#: Kept from the peer folder (the embedded node's repo is kept too: ~200 tiny blocks).
KEEP = ("service.json", "identity.json", "peerstore", "raft", "ipfs")


def service(folder: Path, *args: str) -> list[str]:
    # not ``-m pincluster.cli.service``: run as __main__, its subcommands would register on another module
    return [sys.executable, "-c", "from pincluster.cli.service import main; main()", "-c", str(folder), *args]


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTER_", "IPFS_CLUSTER_"))}
    e["CLUSTER_PEERNAME"] = "v1-fixture"
    return e


def http(url: str, method: str = "POST", body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, data=body if method == "POST" else None, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=60) as resp:
        text = resp.read().decode()
    lines = [json.loads(x) for x in text.splitlines() if x.strip()]
    return lines if len(lines) != 1 else lines[0]


def endpoint(maddr: str) -> str:
    parts = maddr.split("/")
    return f"http://{parts[2]}:{parts[4]}"


def main(dest: Path) -> None:
    import pincluster.state.store as store

    version: int = store.FORMAT_VERSION  # the code on the path, not the one mypy sees
    assert version == 1, f"run this with the format-1 code on PYTHONPATH (found format version {version})"
    work = Path(tempfile.mkdtemp(prefix="state-v1-"))
    folder = work / "peer"
    subprocess.run(service(folder, "init", "--randomports", "--ipfs", "embedded"), env=env(), check=True,
                   capture_output=True)
    svc = json.loads((folder / "service.json").read_text())
    svc["cluster"]["listen_multiaddress"] = [
        a.replace("0.0.0.0", "127.0.0.1") for a in svc["cluster"]["listen_multiaddress"] if "/tcp/" in a]
    raft = svc["consensus"]["raft"]
    raft["listen_multiaddress"] = raft["listen_multiaddress"].replace("0.0.0.0", "127.0.0.1")
    raft["compaction_min_entries"] = 120  # a snapshot after ~120 entries, the rest in the journal
    (folder / "service.json").write_text(json.dumps(svc, indent=2))
    ipfs_cfg = json.loads((folder / "ipfs" / "config").read_text())
    ipfs_cfg["Addresses"]["Swarm"] = [a.replace("0.0.0.0", "127.0.0.1") for a in ipfs_cfg["Addresses"]["Swarm"]]
    (folder / "ipfs" / "config").write_text(json.dumps(ipfs_cfg, indent=2))
    rest = endpoint(svc["api"]["restapi"]["http_listen_multiaddress"])
    ipfs = endpoint(svc["ipfs_connector"]["ipfshttp"]["node_multiaddress"]) + "/api/v0"
    me = json.loads((folder / "identity.json").read_text())["id"]

    log = (work / "daemon.log").open("wb")
    proc = subprocess.Popen(service(folder, "daemon"), stdout=log, stderr=subprocess.STDOUT, env=env())
    try:
        deadline = time.monotonic() + 90
        while b"IPFS Cluster is READY" not in (work / "daemon.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit((work / "daemon.log").read_text())
            time.sleep(0.3)
        b = "fixtureboundary"
        body = b"".join(
            f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="f{i}.txt"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + f"pincluster state format 1 fixture, file {i}\n".encode() + b"\r\n"
            for i in range(N + 1)
        ) + f"--{b}--\r\n".encode()
        added = http(f"{ipfs}/add?pin=false&cid-version=0", body=body,
                     headers={"Content-Type": f"multipart/form-data; boundary={b}"})
        cids = [a["Hash"] for a in added]
        assert len(cids) == N + 1, added
        for i, cid in enumerate(cids[:N]):
            q: dict[str, str] = {}
            if i % 2 == 0:
                q["name"] = f"file-{i}" if i % 17 else f"résumé-{i} ✓"
            if i % 5 == 0:
                q["replication"] = "-1"
            elif i % 5 == 1:
                q["replication-min"], q["replication-max"] = "1", "1"
            elif i % 5 == 2:
                q["replication-min"], q["replication-max"] = "1", "3"
            if i % 3 == 0:
                q["meta-owner"] = f"team{i % 4}"
                q["meta-kind"] = "fixture"
            if i % 7 == 0:
                q["expire-at"] = f"2031-0{1 + i % 9}-1{i % 10}T12:00:00Z"
            elif i % 11 == 0:
                q["expire-in"] = "87600h"
            if i % 6 == 0 and i % 5:
                q["user-allocations"] = me
            if i % 13 == 0:
                q["mode"] = "direct"
            if i % 19 == 0:
                q["origins"] = f"/ip4/127.0.0.1/tcp/4001/p2p/{me}"
            http(f"{rest}/pins/{cid}?{urllib.parse.urlencode(q)}")
        # one pin update: the last file replaces file 2's pin, inheriting its options
        http(f"{rest}/pins/{cids[N]}?{urllib.parse.urlencode({'pin-update': cids[2], 'name': 'updated-2'})}")
        deadline = time.monotonic() + 120
        while True:
            statuses = http(f"{rest}/pins?local=true", method="GET")
            pending = [s for s in statuses if any(p["status"] != "pinned" for p in s["peer_map"].values())]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    assert proc.returncode == 0, (work / "daemon.log").read_text()[-3000:]
    dest.mkdir(parents=True, exist_ok=True)
    exported = subprocess.run(service(folder, "state", "export"), env=env(), check=True, capture_output=True).stdout
    (dest / "export.ndjson").write_bytes(exported)
    peer = dest / "peer"
    if peer.exists():
        shutil.rmtree(peer)
    peer.mkdir()
    for name in KEEP:
        src = folder / name
        if src.is_dir():
            shutil.copytree(src, peer / name, ignore=shutil.ignore_patterns("repo.lock", "*.tmp"))
        elif src.exists():
            shutil.copy2(src, peer / name)
    print(f"{len(exported.splitlines())} pins exported; fixture in {peer}; work folder {work}")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
