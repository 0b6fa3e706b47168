"""The help of ``ipfs-cluster-ctl`` and ``ipfs-cluster-service`` against IPFS Cluster's Go originals (1.1.6, urfave/cli
v1.22.17, built by ``tests/gocluster.sh``): stdout, stderr and the exit code, byte for byte.

Every command path (the ctl's from Go's own ``commands``) with ``--help``, ``-h``, ``help <cmd>``, ``h <cmd>`` and an
unknown flag; the application and each group alone, with ``help``, ``help <cmd>``, ``help help`` and an unknown
topic; urfave's quirks (``help pin add`` shows ``pin``, ``pin help`` shows the group as an application, the
application's own ``help`` has no name); and the usage errors of Go's ``flag`` package: an unknown flag, a flag
without its value, a bad int, bool or duration value, two forms of one flag, bad flag syntax.

pincluster has a few things Go has not; they are the only differences, listed in ``CTL_DIFFERENCES`` and
``SERVICE_DIFFERENCES`` (Go's text → ours) and applied to Go's output before comparing. Each must show up.
Both programs run with the same HOME: the service's ``--config`` default is ``$HOME/.ipfs-cluster``.
Skipped with ``PINCLUSTER_NO_GO_CLUSTER=1``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pincluster.localnet import CTL, SERVICE, clean_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kubo import go_cluster_binary  # type: ignore[import-not-found,unused-ignore]

pytestmark = pytest.mark.timeout(600)

Run = tuple[int, str, str]

#: (Go's text, ours): pincluster's own ``sync`` command.
CTL_DIFFERENCES = [
    ("   recover  Recover tracked items in error state\n",
     "   recover  Recover tracked items in error state\n"
     "   sync     Sync the status of tracked items with IPFS (pincluster only)\n"),
    ("ipfs-cluster-ctl recover\n", "ipfs-cluster-ctl recover\nipfs-cluster-ctl sync\n"),  # `commands`
]

#: (Go's text, ours): ``init --consensus`` defaults to raft (pincluster has no crdt consensus), ``init`` and
#: ``daemon`` have ``--ipfs`` (the embedded IPFS node), ``daemon --upgrade`` upgrades (Go ignores it) and
#: ``state upgrade`` exists.
SERVICE_DIFFERENCES = [
    ("   --upgrade, -u                run state migrations before starting (deprecated/unused)\n",
     "   --upgrade, -u                run state migrations before starting (as 'state upgrade': backs the data "
     "folder up first)\n"),
    ("   --consensus value    select consensus: 'crdt' or 'raft' (default: \"crdt\")\n",
     "   --consensus value    select consensus: 'crdt' or 'raft' (default: \"raft\")\n"),
    ("   --randomports        configure random ports to listen on instead of defaults\n",
     "   --randomports        configure random ports to listen on instead of defaults\n"
     "   --ipfs value         'embedded' (set up an IPFS node in <config>/ipfs, run by the peer) or 'external' "
     "(an IPFS daemon at ipfshttp.node_multiaddress); default: external when an IPFS API answers there\n"),
    ('   --no-trust                   do not trust bootstrap peers (only for "crdt" consensus)\n',
     '   --no-trust                   do not trust bootstrap peers (only for "crdt" consensus)\n'
     "   --ipfs value                 'embedded' (run the IPFS node in <config>/ipfs in this process) or "
     "'external' (use the IPFS daemon at ipfshttp.node_multiaddress); default: embedded when <config>/ipfs "
     "exists\n"),
    ("   cleanup  remove persistent data\n",
     "   cleanup  remove persistent data\n"
     "   upgrade  upgrade the state on disk to this version's format (pincluster)\n"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def _run(binary: Path | str, args: Sequence[str], home: Path) -> Run:
    res = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                         env=clean_env({"HOME": str(home)}), cwd=home)
    return res.returncode, res.stdout, res.stderr


def _compare(go_bin: Path, ours_bin: str, cases: list[list[str]], home: Path,
             differences: list[tuple[str, str]]) -> set[int]:
    """Run every case with both programs; Go's stdout with ``differences`` applied must be ours. Returns the
    indexes of the differences that applied."""
    with ThreadPoolExecutor(4) as pool:
        go = list(pool.map(lambda args: _run(go_bin, args, home), cases))
        ours = list(pool.map(lambda args: _run(ours_bin, args, home), cases))
    used: set[int] = set()
    failed = []
    for args, g, o in zip(cases, go, ours, strict=True):
        out = g[1]
        for i, (theirs, mine) in enumerate(differences):
            if theirs in out:
                out = out.replace(theirs, mine)
                used.add(i)
        if (g[0], out, g[2]) != o:
            failed.append(f"{Path(ours_bin).name} {' '.join(args)}:\nGo:   {(g[0], out, g[2])!r}\nours: {o!r}")
    assert not failed, "\n\n".join(failed)
    return used


def _help_cases(paths: Sequence[str], groups: Sequence[str]) -> list[list[str]]:
    """The help and usage-error invocations of each command path (words after the program's name)."""
    cases: list[list[str]] = [[], ["--help"], ["-h"], ["help"], ["h"], ["--bogus"], ["-bogus"], ["---x"], ["foo"],
                              ["help", "foo"], ["help", "help"], ["h", "h"], ["help", "-h"], ["help", "--bogus"],
                              ["-v"], ["--version"], ["-h", "--help"], ["-h=false"], ["--", "foo"]]
    for path in paths:
        words = path.split()
        cases += [[*words, "--help"], [*words, "-h"], ["help", *words], ["h", *words], [*words, "--bogus"]]
    for group in groups:
        words = group.split()
        cases += [words, [*words, "help"], [*words, "help", "help"], [*words, "h", "h"], [*words, "foo"],
                  [*words, "help", "foo"], [*words, "-v"], [*words, "--bogus"], [*words, "--help", "-h"]]
        sub = next(p for p in paths if p.startswith(group + " ")).split()[-1]
        cases += [[*words, "help", sub], [*words, "h", sub], [*words, "help", sub, "x"], ["help", *words, sub]]
    return cases


def test_ctl_help_is_gos(home: Path) -> None:
    go_ctl = go_cluster_binary("ipfs-cluster-ctl")
    listed = subprocess.run([str(go_ctl), "commands"], capture_output=True, text=True, check=True).stdout
    paths = [line.removeprefix("ipfs-cluster-ctl ") for line in listed.splitlines()]
    groups = [p for p in paths if any(q.startswith(p + " ") for q in paths)]
    assert groups == ["peers", "pin", "health", "ipfs"]
    cases = _help_cases(paths, groups) + [["commands"]] + [a.split() for a in (
        "--host", "--host x -l y", "--timeout abc", "--timeout 99999999999999999999", "--https=maybe", "--enc",
        "pin add -r", "pin add -r abc", "pin add x -r", "pin add --rmin 1_0 --rmin abc", "pin add --wait=maybe",
        "pin add -r 1 --replication 2", "pin add --wait-timeout abc", "pin add --metadata", "pin add --ns --no-status",
        "add --cid-version 1.5", "add -rq", "status --filter", "health graph -f", "pin ls --filter", "peers rm -x",
        "ipfs gc --local=nope", "pin -rf", "health -h=no")]
    used = _compare(go_ctl, CTL, cases, home, CTL_DIFFERENCES)
    assert used == set(range(len(CTL_DIFFERENCES)))


def test_ctl_sync_is_pinclusters_own(home: Path) -> None:
    """Go has no ``sync``; ours shows its help in urfave's layout."""
    go_ctl = go_cluster_binary("ipfs-cluster-ctl")
    assert _run(go_ctl, ["sync", "--help"], home) == (3, "", "No help topic for 'sync'\n")
    ours = _run(CTL, ["sync", "--help"], home)
    assert ours[0] == 0 and ours[1].startswith(
        "NAME:\n   ipfs-cluster-ctl sync - Sync the status of tracked items with IPFS (pincluster only)\n\n"
        "USAGE:\n   ipfs-cluster-ctl sync [command options] [CID1] [CID2]...\n\nDESCRIPTION:\n")
    assert ours[1].endswith("\n\n\nOPTIONS:\n   --local  run operation only on the contacted peer\n   \n")
    assert _run(CTL, ["help", "sync"], home) == ours


SERVICE_PATHS = ["init", "daemon", "state", "state crdt", "state export", "state import", "state cleanup", "version"]


def test_service_help_is_gos(home: Path) -> None:
    go_service = go_cluster_binary("ipfs-cluster-service")
    cases = _help_cases(SERVICE_PATHS, ["state"]) + [a.split() for a in (
        "--config", "-c x --config y", "--debug=maybe", "init --consensus", "init -s -s --custom-secret",
        "state export --file", "state import --rmin x", "state import --rmax", "daemon --stats=maybe",
        "daemon --bootstrap", "daemon -u=2", "state crdt --help", "state crdt -h", "state help crdt", "foo bar",
        "version --bogus", "state import --allocs")]
    used = _compare(go_service, SERVICE, cases, home, SERVICE_DIFFERENCES)
    assert used == set(range(len(SERVICE_DIFFERENCES)))


def test_service_crdt_commands_on_a_raft_peer(home: Path, tmp_path: Path) -> None:
    """``state crdt …`` checks the peer's consensus first (urfave's ``Before``), so on a Raft peer even a crdt
    subcommand's ``--help`` is the error; the group's own help comes before the check."""
    go_service = go_cluster_binary("ipfs-cluster-service")
    folder = tmp_path / "peer"
    env = clean_env({"HOME": str(home), "CLUSTER_SECRET": "5a" * 32})
    subprocess.run([SERVICE, "-c", str(folder), "init", "--ipfs", "external"], check=True, capture_output=True,
                   env=env, timeout=60)
    cases = [["-c", str(folder), *a.split()] for a in (
        "state crdt", "state crdt info", "state crdt info --help", "state crdt dot -f x", "state crdt mark-dirty",
        "state crdt mark-clean -h", "state crdt help", "state crdt help info", "state crdt --help", "state crdt foo",
        "state crdt --bogus", "state help crdt")]
    _compare(go_service, SERVICE, cases, home, [])
    ours = _run(SERVICE, ["-c", str(folder), "state", "crdt", "info"], home)
    assert ours == (1, "", "error : crdt subcommands can only be run on peers initialized with crdt consensus\n")


def test_service_state_upgrade_is_pinclusters_own(home: Path) -> None:
    go_service = go_cluster_binary("ipfs-cluster-service")
    assert _run(go_service, ["state", "upgrade", "--help"], home) == (3, "", "No help topic for 'upgrade'\n")
    ours = _run(SERVICE, ["state", "upgrade", "--help"], home)
    assert ours[0] == 0 and ours[1].startswith(
        "NAME:\n   ipfs-cluster-service state upgrade - upgrade the state on disk to this version's format "
        "(pincluster)\n\nUSAGE:\n   ipfs-cluster-service state upgrade [arguments...]\n\nDESCRIPTION:\n")
    assert _run(SERVICE, ["state", "help", "upgrade"], home) == ours
