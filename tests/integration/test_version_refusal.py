"""Peers of incompatible versions refuse each other, and both say so (real daemons on 127.0.0.1).

The second peer runs the same code with another RPC protocol major version (``pincluster.RPC_PROTOCOL_VERSION``
set by a small ``python -c`` wrapper before the CLI loads), as a release that changed the protocol would. Its
``--bootstrap`` to the first peer is refused at the handshake: the joining peer exits non-zero and both logs
name both protocol versions and what to do. Nothing is written: the first peer's peerset and pinset are
unchanged, and the refused peer has no Raft state.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.integration.cluster_harness import clean_env, init_peers

from pincluster import RPC_PROTOCOL_VERSION

pytestmark = pytest.mark.timeout(180)

CID = "QmbrCtydGyPeHiLURSPMqrvE5mCgMCwFYq3UD4XLCeAYw6"
WRAPPER = (
    "import sys, pincluster; pincluster.RPC_PROTOCOL_VERSION = sys.argv.pop(1); "
    "from pincluster.cli.service import main; main()"
)


def other_version() -> str:
    major, _, _minor = RPC_PROTOCOL_VERSION.partition(".")
    return f"{int(major) + 1}.0"


def test_peers_with_other_protocol_versions_refuse_each_other(tmp_path: Path) -> None:
    first, second = init_peers(tmp_path, 2)
    theirs = other_version()
    ours_name, theirs_name = f"/pincluster/rpc/{RPC_PROTOCOL_VERSION}", f"/pincluster/rpc/{theirs}"
    try:
        first.start()
        first.wait_ready(60)
        code, _ = first.api("POST", f"/pins/{CID}?replication=-1&name=before")
        assert code == 200
        code, before = first.api("GET", "/allocations")
        assert code == 200

        res = subprocess.run(
            [sys.executable, "-c", WRAPPER, theirs, "-c", str(second.folder), "daemon",
             "--bootstrap", first.cluster_addr],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, env=clean_env(), timeout=90,
        )
        out = res.stdout + res.stderr
        assert res.returncode != 0, out
        assert f"p2p host {second.identity} ({theirs_name})" in out  # the wrapper did change the version
        assert ours_name in res.stderr and theirs_name in res.stderr, res.stderr
        assert "run the same major version on every peer" in res.stderr

        refused = [line for line in first.log().splitlines() if "incompatible protocol" in line]
        assert refused, first.log()[-3000:]
        assert ours_name in refused[0] and theirs_name in refused[0]
        assert "run the same major version on every peer" in refused[0]

        # nothing changed: the first peer is alone with its pinset, the refused one has no Raft state
        code, ident = first.api("GET", "/id")
        assert code == 200 and ident["cluster_peers"] == [first.identity]
        assert first.api("GET", "/allocations") == (200, before)
        raft = second.folder / "raft"
        assert not raft.exists() or not any(raft.iterdir())
    finally:
        first.stop()
