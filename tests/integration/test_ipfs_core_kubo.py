"""Cross-check the importer against a real kubo binary (``ipfs add --only-hash``) for many option sets.

kubo is the reference: same bytes on disk, same flags, and every output line (name and CID, in order) must
match. Skipped when kubo is disabled (``PINCLUSTER_NO_KUBO=1``); see tests/kubo.py.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kubo import kubo_binary  # type: ignore[import-not-found,unused-ignore]
from pincluster.ipfs.unixfs.importer import AddOptions, ImportEntry, import_entries

pytestmark = [pytest.mark.kubo, pytest.mark.timeout(240)]

FLAG_SETS = [
    [],
    ["--cid-version=1"],
    ["--raw-leaves"],
    ["--trickle"],
    ["--trickle", "--cid-version=1"],
    ["--chunker=size-1000"],
    ["--chunker=size-1000", "--trickle", "--raw-leaves"],
    ["--hash=blake2b-256"],
    ["--hash=blake3", "--raw-leaves=false"],
    ["--cid-version=1", "--raw-leaves=false", "--chunker=size-65536"],
    ["--hidden"],
    ["-w"],
    ["--chunker=buzhash"],
    ["--chunker=buzhash", "--raw-leaves", "--trickle"],
    ["--chunker=rabin"],
    ["--chunker=rabin-min:1000-avg:8192-max:30000", "--cid-version=1"],
]


@pytest.fixture(scope="module")
def kubo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    binary = kubo_binary()
    repo = tmp_path_factory.mktemp("kubo-repo")
    env = {**os.environ, "IPFS_PATH": str(repo)}
    subprocess.run([str(binary), "init", "--profile", "test", "-e"], env=env, check=True, capture_output=True)
    return binary, env


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rnd = random.Random(42)
    root = tmp_path_factory.mktemp("input") / "tree"
    files = {
        "big.bin": rnd.randbytes(174 * 1000 + 5 * 262144 + 777),  # multi-level with size-1000, 2 levels default
        "buz.bin": rnd.randbytes(3_000_000),  # several buzhash cuts, incl. 512 KiB ones
        "zeros.bin": bytes(1_200_000),
        "small.txt": b"hello world\n",
        "empty": b"",
        ".hidden": b"secret",
        "sub/z.bin": rnd.randbytes(262144),
        "sub/.git/config": b"[core]\n",
        "sub/deeper/x": rnd.randbytes(300_001),
        "\u00e9t\u00e9 file.txt": b"utf-8 name",
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "sub" / "emptydir").mkdir()
    return root


def kubo_add(kubo: tuple[Path, dict[str, str]], flags: list[str], path: Path) -> list[tuple[str, str]]:
    binary, env = kubo
    out = subprocess.run(
        [str(binary), "add", "-n", "-r", "--progress=false", *flags, path.name],
        env=env, cwd=path.parent, check=True, capture_output=True, text=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        _added, cid, *name = line.split(" ", 2)
        rows.append((name[0] if name else "", cid))
    return rows


def ours(flags: list[str], path: Path) -> list[tuple[str, str]]:
    args: dict[str, str] = {}
    for f in flags:
        if f == "-w":
            args["wrap-with-directory"] = "true"
        else:
            k, _, v = f.lstrip("-").partition("=")
            args[k] = v or "true"
    opts = AddOptions.from_kubo_args(args)

    async def chunks(p: Path) -> AsyncIterator[bytes]:
        with open(p, "rb") as fh:
            while piece := fh.read(100_000):
                yield piece

    async def entries() -> AsyncIterator[ImportEntry]:
        base = path.parent

        def visit(p: Path) -> list[ImportEntry]:
            rel = p.relative_to(base).as_posix()
            if p.is_dir():
                out = [ImportEntry(rel, "dir")]
                for child in sorted(p.iterdir(), key=lambda c: c.name.encode()):
                    out += visit(child)
                return out
            return [ImportEntry(rel, "file", chunks(p))]

        for e in visit(path):
            yield e

    async def run() -> list[tuple[str, str]]:
        return [(ev.name, str(ev.cid)) async for ev in import_entries(entries(), None, opts) if ev.cid]

    return asyncio.run(run())


@pytest.mark.parametrize("flags", FLAG_SETS, ids=[" ".join(f) or "default" for f in FLAG_SETS])
def test_directory_add_matches_kubo(kubo: tuple[Path, dict[str, str]], tree: Path, flags: list[str]) -> None:
    assert ours(flags, tree) == kubo_add(kubo, flags, tree)


@pytest.mark.parametrize("count", [1120, 1121])
@pytest.mark.parametrize("flags", [[], ["--cid-version=1"]], ids=["v0", "v1"])
def test_hamt_directory_matches_kubo(
    kubo: tuple[Path, dict[str, str]], tmp_path: Path, count: int, flags: list[str]
) -> None:
    # 200-byte names: with CIDv0 links 1120 entries stay a basic directory and 1121 become a HAMT shard
    d = tmp_path / "many"
    d.mkdir()
    for i in range(count):
        (d / f"{i:04d}-{'n' * 195}").write_bytes(b"%d" % (i % 5))
    assert ours(flags, d) == kubo_add(kubo, flags, d)


SINGLE = [f for f in FLAG_SETS if f not in (["--hidden"], ["-w"])]


@pytest.mark.parametrize("flags", SINGLE, ids=[" ".join(f) or "default" for f in SINGLE])
@pytest.mark.parametrize("name", ["big.bin", "buz.bin", "empty"])
def test_single_file_add_matches_kubo(
    kubo: tuple[Path, dict[str, str]], tree: Path, flags: list[str], name: str
) -> None:
    assert ours(flags, tree / name) == kubo_add(kubo, flags, tree / name)
