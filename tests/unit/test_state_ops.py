"""Offline state export/import/cleanup/upgrade (spec §11) on real config folders and real Raft data folders."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pincluster.cli import state as state_cli
from pincluster.cli.service import cli, randomize_ports
from pincluster.config import IDENTITY_JSON, ServiceConfig, default_config, load_config, load_identity, new_identity
from pincluster.config.peerstore import save_peerstore
from pincluster.errors import ConfigError, StateError
from pincluster.state import ops
from pincluster.state import store as store_mod
from pincluster.state.store import SQLiteStore, StateVersionError, read_format_version, read_snapshot_info
from pincluster.state.upgrade import upgrade_state, upgrade_state_result
from pincluster.types.cid import CID, sha256_multihash
from pincluster.types.codec import pin_from_state, pin_to_state, to_json
from pincluster.types.models import Pin
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "ipfs-cluster-state-export.json"
SAMPLE_CID = "QmbrCtydGyPeHiLURSPMqrvE5mCgMCwFYq3UD4XLCeAYw6"
OTHER_PEER = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A config folder as ``init --randomports`` leaves it (Raft on 127.0.0.1, external IPFS)."""
    f = tmp_path / "peer"
    cfg = randomize_ports(default_config("raft", f))
    cfg = cfg.replace(raft=dataclasses.replace(cfg.raft, listen_multiaddress=Multiaddr(
        str(cfg.raft.listen_multiaddress).replace("0.0.0.0", "127.0.0.1"))))
    cfg.save(f / "service.json")
    new_identity({}).save(f / IDENTITY_JSON)
    save_peerstore(cfg.peerstore_path(), [])
    return f


def cid_of(i: int) -> CID:
    return CID.v0(hashlib.sha256(b"pin %d" % i).digest()) if i % 2 else CID.v1(0x55, sha256_multihash(b"%d" % i))


def make_pins(n: int) -> list[Pin]:
    peer = PeerID.decode(OTHER_PEER)
    return [
        Pin(cid=cid_of(i), name=f"pin-{i}" if i % 3 == 0 else "", replication_factor_min=-1 if i % 2 else 1,
            replication_factor_max=-1 if i % 2 else 2, allocations=() if i % 2 else (peer,),
            metadata={"k": str(i)} if i % 5 == 0 else None, max_depth=0 if i % 7 == 0 else -1)
        for i in range(n)
    ]


def ndjson(pins: list[Pin]) -> bytes:
    return b"".join(to_json(p) + b"\n" for p in pins)


def export_bytes(folder: Path) -> bytes:
    out = io.BytesIO()
    ops.export_state(folder, out)
    return out.getvalue()


def test_export_cleanup_import_round_trips_10k_pins(folder: Path) -> None:
    pins = make_pins(10_000)
    t0 = time.perf_counter()
    res = ops.import_state(folder, io.BytesIO(ndjson(pins)))
    t_import = time.perf_counter() - t0
    assert res.read == res.pins == 10_000 and res.backup is None
    t0 = time.perf_counter()
    first = export_bytes(folder)
    t_export = time.perf_counter() - t0
    lines = first.splitlines()
    assert len(lines) == 10_000
    # every line is one compact Go-shaped Pin, in CID byte order, equal to what was imported
    assert lines == sorted(lines, key=lambda ln: CID.decode(json.loads(ln)["cid"]).bytes)
    by_cid = {str(p.cid): to_json(pin_from_state(pin_to_state(p))) for p in pins}  # as Go shows stored pins
    assert sorted(lines) == sorted(by_cid.values())

    data, backup = ops.cleanup_state(folder)
    assert backup == data.with_name("raft.old.0") and not data.exists()
    assert export_bytes(folder) == b""
    res2 = ops.import_state(folder, io.BytesIO(first))
    assert res2.pins == 10_000 and res2.backup is None
    assert export_bytes(folder) == first
    print(f"\n10k pins: import {t_import:.2f}s, export {t_export:.2f}s")


def test_sample_file_imports_as_a_recursive_pin(folder: Path) -> None:
    with open(SAMPLE, "rb") as f:
        res = ops.import_state(folder, f)
    assert res.pins == 1
    (line,) = export_bytes(folder).splitlines()
    got = json.loads(line)
    assert got["cid"] == SAMPLE_CID
    assert got["type"] == "pin" and got["mode"] == "recursive" and got["max_depth"] == -1
    assert got["replication_factor_min"] == -1 and got["replication_factor_max"] == -1
    assert got["allocations"] == [] and got["user_allocations"] is None


def test_overrides_and_duplicates(folder: Path) -> None:
    pins = make_pins(6)
    stream = to_json(pins[0]) + b"  " + to_json(pins[1]) + b"\n" + json.dumps(
        json.loads(to_json(pins[2])), indent=2).encode() + b"\n" + ndjson(pins[3:]) + to_json(pins[0].replace(
            name="again"))
    res = ops.import_state(folder, io.BytesIO(stream), rmin=2, rmax=3,
                           allocations=ops.parse_allocations(f" {OTHER_PEER},,{OTHER_PEER}"))
    assert res.read == 7 and res.pins == 6
    got = [json.loads(ln) for ln in export_bytes(folder).splitlines()]
    assert {g["replication_factor_min"] for g in got} == {2}
    assert {g["replication_factor_max"] for g in got} == {3}
    assert all(g["allocations"] == [OTHER_PEER] for g in got)
    assert [g["name"] for g in got if g["cid"] == str(pins[0].cid)] == ["again"]


@pytest.mark.parametrize(
    ("data", "kw", "needle"),
    [
        (b'{"cid": "QmNope"}', {}, "invalid CID"),
        (b"nope", {}, "malformed"),
        (b'{"cid": "' + SAMPLE_CID.encode() + b'"} {"cid": ', {}, "truncated"),
        (b"[1, 2]", {}, "Pin"),
        (b"", {"rmin": 3, "rmax": 2}, "greater than"),
        (b"", {"rmin": -1}, "positive"),
    ],
)
def test_bad_input_is_refused_and_keeps_the_old_state(folder: Path, data: bytes, kw: dict[str, int],
                                                      needle: str) -> None:
    ops.import_state(folder, io.BytesIO(ndjson(make_pins(3))))
    before = export_bytes(folder)
    with pytest.raises(ops.StateImportError, match=needle):
        ops.import_state(folder, io.BytesIO(data), **kw)  # type: ignore[arg-type]
    assert export_bytes(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == ["identity.json", "peerstore", "raft", "service.json"]


def test_bad_allocations_are_refused() -> None:
    with pytest.raises(ops.StateImportError, match="--allocations"):
        ops.parse_allocations("QmNotAPeer")
    assert ops.parse_allocations("") == ()


def _self_spec(folder: Path) -> tuple[ServiceConfig, str, str]:
    cfg = load_config(folder)
    pid = str(load_identity(folder / IDENTITY_JSON).peer_id)
    return cfg, pid, ops.self_raft_spec(cfg, pid)


def test_imported_folder_is_a_snapshot_with_this_peer_as_the_peerset(folder: Path) -> None:
    cfg, _pid, me = _self_spec(folder)
    ops.import_state(folder, io.BytesIO(ndjson(make_pins(5))))
    data = cfg.raft_data_path()
    assert sorted(p.name for p in data.iterdir()) == ["peers.json", "snapshot.sqlite", "state.sqlite"]
    info = read_snapshot_info(data / ops.DUMP_FILE)
    assert info.count == 5 and info.applied_index == ops.IMPORT_INDEX and info.applied_term == 0
    assert json.loads(info.extra["raft_cluster"]) == [me]
    assert json.loads((data / ops.PEERS_FILE).read_text()) == [me]
    st = SQLiteStore(data / ops.STATE_FILE)
    assert st.applied_index == ops.IMPORT_INDEX and st.count() == 5
    st.close()


def test_peerset_is_self_plus_peerstore_peers_with_a_known_raft_address(folder: Path) -> None:
    cfg, pid, me = _self_spec(folder)
    unknown = "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK"
    save_peerstore(cfg.peerstore_path(), [
        Multiaddr(f"/ip4/127.0.0.1/tcp/9096/p2p/{OTHER_PEER}"),
        Multiaddr(f"/ip4/127.0.0.1/tcp/9196/p2p/{unknown}"),
        Multiaddr(f"/ip4/127.0.0.1/tcp/9296/p2p/{pid}"),
    ])
    ops.import_state(folder, io.BytesIO(b""))
    data = cfg.raft_data_path()
    other_spec = f"{OTHER_PEER}@127.0.0.1:9098"
    (data / ops.PEERS_FILE).write_text(json.dumps([me, other_spec]))  # what a running peer saves
    ops.cleanup_state(folder)
    res = ops.import_state(folder, io.BytesIO(b""))
    assert res.members == tuple(sorted([me, other_spec]))
    assert json.loads(read_snapshot_info(data / ops.DUMP_FILE).extra["raft_cluster"]) == sorted([me, other_spec])


async def test_raft_starts_from_an_import_and_keeps_it_across_restarts(folder: Path) -> None:
    from pincluster.consensus.raft import RaftConsensus
    from pincluster.daemon import advertise_host

    cfg, pid, me = _self_spec(folder)
    pins = make_pins(50)
    await asyncio.to_thread(ops.import_state, folder, io.BytesIO(ndjson(pins)))
    rc = cfg.raft  # the consensus takes the section as service.json gives it
    host = str(rc.listen_multiaddress.tcp_host_port()[0])

    def make() -> RaftConsensus:
        return RaftConsensus(peer_id=pid, config=rc, secret=cfg.cluster.secret, data_folder=cfg.raft_data_path(),
                             advertise_host=advertise_host(host, cfg))

    raft = make()
    await raft.start()
    try:
        assert raft.self_spec == me
        await raft.ready(15)
        assert raft.members() == [me]
        assert await raft.state.count() == 50
        new = Pin(cid=cid_of(10_001))
        await raft.log_pin(new.cid.bytes, pin_to_state(new))
        assert await raft.state.count() == 51
    finally:
        await raft.shutdown()
    again = make()
    await again.start()
    try:
        await again.ready(15)
        assert await again.state.count() == 51  # the journal replay neither undoes the import nor loses the pin
    finally:
        await again.shutdown()
    assert len(export_bytes(folder).splitlines()) == 51


def test_cleanup_rotates_backups(folder: Path) -> None:
    cfg = load_config(folder)
    data = cfg.raft_data_path()
    assert ops.cleanup_state(folder) == (data, None)  # nothing there
    for i in range(8):
        ops.import_state(folder, io.BytesIO(ndjson(make_pins(i + 1))))
    backups = sorted(p.name for p in data.parent.iterdir() if p.name.startswith("raft.old."))
    assert backups == [f"raft.old.{i}" for i in range(6)]  # backups_rotate = 6
    assert SQLiteStore(data.with_name("raft.old.0") / ops.STATE_FILE).count() == 7


def _migration(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE extra (k TEXT)")
    conn.execute("INSERT INTO extra(k) VALUES ('migrated')")


def test_upgrade_runs_injected_migration_with_backup(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A future release (current + 1) with an injected migration: refused, then upgraded with a backup."""
    cur = store_mod.FORMAT_VERSION
    nxt = cur + 1
    cfg = load_config(folder)
    data = cfg.raft_data_path()
    ops.import_state(folder, io.BytesIO(ndjson(make_pins(20))))
    before = export_bytes(folder)
    assert upgrade_state_result(folder).backup is None  # current: nothing done

    monkeypatch.setattr(store_mod, "FORMAT_VERSION", nxt)
    with pytest.raises(StateVersionError) as err:
        SQLiteStore(data / ops.STATE_FILE)
    assert f"format version {cur}" in str(err.value) and f"version {nxt}" in str(err.value)
    # no migration registered: refused, nothing touched
    with pytest.raises(StateVersionError, match="no automatic upgrade"):
        upgrade_state(folder)
    assert not list(data.parent.glob("raft.bak.*"))

    monkeypatch.setitem(store_mod.MIGRATIONS, cur, _migration)
    with pytest.raises(StateVersionError, match="ipfs-cluster-service state upgrade"):
        SQLiteStore(data / ops.STATE_FILE)
    res = upgrade_state_result(folder)
    assert res.found == cur and res.to == nxt and res.backup is not None
    assert read_format_version(res.backup / ops.STATE_FILE) == cur  # the backup is the old state
    for name in (ops.STATE_FILE, ops.DUMP_FILE):
        assert read_format_version(data / name) == nxt
        conn = sqlite3.connect(data / name)
        assert conn.execute("SELECT k FROM extra").fetchall() == [("migrated",)]
        conn.close()
    assert read_snapshot_info(data / ops.DUMP_FILE).count == 20
    assert export_bytes(folder) == before
    assert upgrade_state_result(folder).backup is None  # now current


def test_upgrade_refuses_newer_state(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ops.import_state(folder, io.BytesIO(ndjson(make_pins(2))))
    monkeypatch.setattr(store_mod, "FORMAT_VERSION", 0)
    with pytest.raises(StateVersionError, match="newer release"):
        upgrade_state(folder)


def test_export_refuses_other_versions_and_crdt(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ops.import_state(folder, io.BytesIO(ndjson(make_pins(2))))
    monkeypatch.setattr(store_mod, "FORMAT_VERSION", store_mod.FORMAT_VERSION + 1)
    monkeypatch.setitem(store_mod.MIGRATIONS, store_mod.FORMAT_VERSION, _migration)
    with pytest.raises(StateError, match="ipfs-cluster-service state upgrade"):
        export_bytes(folder)
    monkeypatch.undo()
    svc = json.loads((folder / "service.json").read_text())
    svc["consensus"] = {"crdt": {}}
    (folder / "service.json").write_text(json.dumps(svc))
    with pytest.raises(ConfigError, match="crdt consensus is not supported"):
        export_bytes(folder)


def test_cli_prompts_and_refuses_without_terminal(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    data = load_config(folder).raft_data_path()
    res = runner.invoke(cli, ["-c", str(folder), "state", "import", str(SAMPLE)])
    assert res.exit_code == 1 and "--force" in res.output and not data.exists()

    monkeypatch.setattr(state_cli, "stdin_is_terminal", lambda: True)
    res = runner.invoke(cli, ["-c", str(folder), "state", "import", str(SAMPLE)], input="maybe\nn\n")
    assert res.exit_code == 0 and not data.exists()
    assert res.output.count("The pinset (state) of this peer will be replaced. Continue? [y/n]: ") == 2
    res = runner.invoke(cli, ["-c", str(folder), "state", "import", str(SAMPLE)], input="y\n")
    assert res.exit_code == 0, res.output
    assert (data / ops.STATE_FILE).exists()

    res = runner.invoke(cli, ["-c", str(folder), "state", "cleanup"], input="\n")
    assert "The peer state will be removed.  Existing pins may be lost. Continue? [y/n]: " in res.output
    assert res.exit_code == 0 and data.exists()
    res = runner.invoke(cli, ["-c", str(folder), "state", "cleanup"], input="Y\n")
    assert res.exit_code == 0 and not data.exists() and data.with_name("raft.old.0").exists()

    res = runner.invoke(cli, ["-c", str(folder), "state", "import", "-f"], input=b"nope")
    assert res.exit_code == 1
    assert "reading from stdin, Ctrl-D to finish" in res.output
    assert "error importing state: " in res.output


def test_cli_export_to_file_and_lock(folder: Path) -> None:
    from pincluster.lock import ClusterLock

    runner = CliRunner()
    ops.import_state(folder, io.BytesIO(ndjson(make_pins(3))))
    out = folder.parent / "export.json"
    res = runner.invoke(cli, ["-c", str(folder), "state", "export", "-f", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == export_bytes(folder)
    res = runner.invoke(cli, ["-c", str(folder), "state", "export"])
    assert res.exit_code == 0 and res.stdout_bytes == out.read_bytes()
    with ClusterLock(folder):
        res = runner.invoke(cli, ["-c", str(folder), "state", "export"])
    assert res.exit_code == 1 and "error obtaining execution lock" in res.output
    res = runner.invoke(cli, ["-c", str(folder), "state", "upgrade"])
    assert res.exit_code == 0 and f"is current (format version {store_mod.FORMAT_VERSION})" in res.output


@pytest.mark.parametrize("sub", ["info", "dot", "mark-dirty", "mark-clean"])
def test_crdt_subcommands_need_crdt(folder: Path, sub: str) -> None:
    res = CliRunner().invoke(cli, ["-c", str(folder), "state", "crdt", sub])
    assert res.exit_code == 1
    assert "crdt subcommands can only be run on peers initialized with crdt consensus" in res.output


def test_export_reads_the_snapshot_when_it_is_ahead_of_the_state(folder: Path) -> None:
    ops.import_state(folder, io.BytesIO(ndjson(make_pins(30))))
    data = load_config(folder).raft_data_path()
    st = SQLiteStore(data / ops.STATE_FILE)
    st.clear()  # a state behind its snapshot (as after a crash before the snapshot was loaded)
    st.close()
    dump = (data / ops.DUMP_FILE).read_bytes()
    assert len(export_bytes(folder).splitlines()) == 30
    assert (data / ops.DUMP_FILE).read_bytes() == dump  # read-only: the snapshot is left as it was


def test_refuse_unreadable_state_before_a_daemon_starts(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a daemon checks before it binds anything: another format version, or IPFS Cluster's (Go) Raft files,
    are refused; a state it cannot read from here is left to the normal open (which recovers a WAL, or says why)."""
    data = ops.raft_data_folder(folder)
    ops.refuse_unreadable_state(data)  # nothing there yet
    ops.import_state(folder, io.BytesIO(ndjson(make_pins(2))))
    ops.refuse_unreadable_state(data)  # current
    monkeypatch.setattr(store_mod, "FORMAT_VERSION", store_mod.FORMAT_VERSION + 1)
    with pytest.raises(StateVersionError, match=f"{ops.DUMP_FILE} has format version"):
        ops.refuse_unreadable_state(data)  # the snapshot is read first
    monkeypatch.undo()
    (data / ops.DUMP_FILE).unlink()
    (data / ops.STATE_FILE).write_bytes(b"not a database at all")
    ops.refuse_unreadable_state(data)  # not decided here
    (data / "snapshots").mkdir()
    with pytest.raises(store_mod.GoRaftDataError, match=r"holds the Raft state of IPFS Cluster \(Go\) \(snapshots\)"):
        ops.refuse_unreadable_state(data)
