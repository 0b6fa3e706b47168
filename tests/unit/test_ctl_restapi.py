"""The ``ipfs-cluster-ctl`` script against pincluster's real REST API server (with the shared fake cluster
behind it), to check that the two agree on routes, queries, streams and shapes."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_restapi_fakes import FakeCluster, start_api

from pincluster.api.rest.server import RestAPI

pytestmark = pytest.mark.timeout(60)

CTL = str(Path(sys.executable).parent / "ipfs-cluster-ctl")
HELLO_CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


@pytest.fixture
async def served() -> AsyncIterator[tuple[RestAPI, FakeCluster]]:
    api, cluster = await start_api()
    yield api, cluster
    await api.stop()


async def ctl(api: RestAPI, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CLUSTER_CREDENTIALS"}
    proc = await asyncio.create_subprocess_exec(CTL, "--host", api.url, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_ctl_against_the_rest_server(served: tuple[RestAPI, FakeCluster], tmp_path: Path) -> None:
    api, cluster = served
    code, out, _ = await ctl(api, "id")
    assert code == 0 and out.startswith(f"{cluster.self_id} | ")
    code, out, _ = await ctl(api, "peers", "ls")
    assert code == 0 and out.count(" | Sees ") == 3

    (tmp_path / "h.txt").write_bytes(b"hello world\n")
    code, out, _ = await ctl(api, "add", str(tmp_path / "h.txt"))
    assert (code, out) == (0, f"added {HELLO_CID} h.txt\n")

    code, out, _ = await ctl(api, "pin", "add", "--ns", "-n", "greeting", HELLO_CID)
    assert code == 0 and out.startswith(f"{HELLO_CID} | greeting | PIN | ")
    code, out, _ = await ctl(api, "pin", "ls")
    assert code == 0 and out.startswith(f"{HELLO_CID} | greeting | PIN | ")
    code, out, _ = await ctl(api, "status", "--filter", "pinned")
    assert code == 0 and out.startswith(f"{HELLO_CID} | greeting:\n") and out.count(": PINNED | ") == 3
    code, out, _ = await ctl(api, "--enc", "json", "sync", HELLO_CID)
    assert code == 0 and out.startswith('{\n    "cid": "' + HELLO_CID)

    code, out, _ = await ctl(api, "pin", "rm", "--wait", HELLO_CID)
    assert code == 0 and out.count(": UNPINNED | ") == 3
    code, out, _ = await ctl(api, "pin", "ls", HELLO_CID)
    assert (code, out) == (2, "An error occurred:\n  Code: 404\n  Message: pin is not part of the pinset\n")

    code, out, _ = await ctl(api, "health", "graph")
    assert code == 0 and out.startswith("digraph cluster {\n") and out.endswith("}")
    code, out, _ = await ctl(api, "health", "metrics")
    assert code == 0 and "freespace\n" in out
