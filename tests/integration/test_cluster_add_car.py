"""``ipfs-cluster-ctl add --format car`` on a real 3-peer cluster (embedded IPFS nodes), with CAR files made by
real kubo (`ipfs dag export`)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.cluster_harness import Peer, ctl, running_cluster
from tests.integration.ctl_formats import json_stream
from tests.kubo import kubo_cli

from pincluster.ipfs.car import encode_header

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cars(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """kubo-made CARs: a 700 kB file as CIDv1 with raw leaves, and a small file; plus a two-root CAR."""
    d = tmp_path_factory.mktemp("cars")
    ipfs = kubo_cli(d / "repo")
    content = os.urandom(700_000)
    (d / "big.bin").write_bytes(content)
    (d / "small.txt").write_bytes(b"a small file for a CAR\n")
    big = ipfs("add", "-Q", "--offline", "--cid-version=1", str(d / "big.bin")).decode().strip()
    small = ipfs("add", "-Q", "--offline", str(d / "small.txt")).decode().strip()
    (d / "big.car").write_bytes(ipfs("dag", "export", "--offline", big))
    small_car = ipfs("dag", "export", "--offline", small)
    (d / "small.car").write_bytes(small_car)
    from pincluster.types.cid import CID, decode_uvarint

    n, pos = decode_uvarint(small_car, 0)
    (d / "two.car").write_bytes(encode_header([CID.decode(small), CID.decode(big)]) + small_car[pos + n:])
    corrupt = bytearray(small_car)
    corrupt[-2] ^= 0x20
    (d / "corrupt.car").write_bytes(bytes(corrupt))
    return {"dir": d, "big": big, "small": small, "content": content}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Peer]]:
    with running_cluster(tmp_path_factory.mktemp("car3"), 3) as peers:
        yield peers


def node_post(peer: Peer, path: str) -> bytes:
    req = urllib.request.Request(f"{peer.ipfs_api}/{path}", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return bytes(resp.read())


def statuses(peer: Peer, cid: str) -> dict[str, str]:
    status, body = peer.api("GET", f"/pins/{cid}")
    assert status == 200, body
    return {pid: info["status"] for pid, info in body["peer_map"].items()}


def test_add_car_rf2_wait_pins_root_on_two_and_cat_gives_content(cluster: list[Peer], cars: dict[str, Any]) -> None:
    d: Path = cars["dir"]
    res = ctl(cluster[0], "add", "--format", "car", "--rmin", "2", "--rmax", "2", "--wait", "--wt", "60s",
              str(d / "big.car"))
    assert res.stdout == f"added {cars['big']} big.car\n", res.stdout + res.stderr
    st = statuses(cluster[1], cars["big"])
    assert sorted(st.values()) == ["pinned", "pinned", "remote"], st
    status, pin = cluster[2].api("GET", f"/allocations/{cars['big']}")
    assert status == 200 and pin["replication_factor_min"] == 2 and pin["type"] == "pin"
    assert sorted(pin["allocations"]) == sorted(p for p, s in st.items() if s == "pinned")
    holder = next(p for p in cluster if st[p.identity] == "pinned")
    assert node_post(holder, f"cat?arg={cars['big']}") == cars["content"]
    pins = node_post(holder, f"pin/ls?arg={cars['big']}&type=recursive")
    assert cars["big"] in json.loads(pins)["Keys"]


def test_add_car_json_event_and_rest_errors(cluster: list[Peer], cars: dict[str, Any]) -> None:
    d: Path = cars["dir"]
    res = ctl(cluster[1], "--enc", "json", "add", "--format", "car", "--no-pin", str(d / "small.car"))
    (ev,) = json_stream(res.stdout)
    assert ev["cid"] == cars["small"] and ev["name"] == "small.car"
    assert ev["size"] == 23 and ev["bytes"] == 31  # UnixFS file size; the one block's bytes
    status, _ = cluster[1].api("GET", f"/allocations/{cars['small']}")
    assert status == 404  # --no-pin: blocks only
    # the REST API itself: wrapping is refused, as Go's carAdder does; a corrupt block is a 400 naming its CID
    code, text = rest_add(cluster[0], "format=car&wrap-with-directory=true", (d / "small.car").read_bytes())
    assert code == 400 and "cannot wrap a CAR file upload" in text
    code, text = rest_add(cluster[0], "format=car", (d / "corrupt.car").read_bytes())
    assert code == 400 and f"CAR block {cars['small']} is corrupt" in text
    code, text = rest_add(cluster[0], "format=car", (d / "small.car").read_bytes()[:-5])
    assert code == 400 and "truncated" in text


def rest_add(peer: Peer, query: str, car: bytes) -> tuple[int, str]:
    """POST /add (stream-channels=false, so an error is the HTTP status) with one CAR part."""
    boundary = "carboundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.car"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + car + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{peer.rest}/add?{query}&stream-channels=false", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_add_car_errors(cluster: list[Peer], cars: dict[str, Any]) -> None:
    d: Path = cars["dir"]
    res = ctl(cluster[0], "add", "--format", "car", "-w", str(d / "small.car"), check=False)
    assert res.returncode != 0
    assert "only a single CAR file can be added and wrap-with-directory is not supported" in res.stderr
    res = ctl(cluster[0], "add", "--format", "car", str(d / "small.car"), str(d / "big.car"), check=False)
    assert res.returncode != 0 and "wrap-with-directory is not supported" in res.stderr
    res = ctl(cluster[2], "add", "--format", "car", str(d / "two.car"), check=False)
    assert res.returncode != 0 and "only CAR files with a single root are supported" in res.stdout + res.stderr
    res = ctl(cluster[2], "add", "--format", "car", str(d / "corrupt.car"), check=False)
    assert res.returncode != 0
    assert f"CAR block {cars['small']} is corrupt" in res.stdout + res.stderr
    status, _ = cluster[0].api("GET", f"/allocations/{cars['small']}")
    assert status == 404  # nothing was pinned by the failed adds
