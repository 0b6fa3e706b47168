"""The allow-list unpickler installed into PySyncObj."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import pysyncobj.journal
import pysyncobj.pickle
import pytest

from pincluster.consensus import safe_pickle
from pincluster.consensus.transport import PeerNode


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(autouse=True)
def _installed() -> None:
    safe_pickle.install()


def test_install_patches_every_pysyncobj_entry_point() -> None:
    assert pysyncobj.pickle.loads is safe_pickle.safe_loads
    assert pysyncobj.pickle.load is safe_pickle.safe_load
    assert pysyncobj.journal.loads is safe_pickle.safe_loads
    assert pysyncobj.pickle.dumps is safe_pickle.fast_dumps and pysyncobj.journal.dumps is safe_pickle.fast_dumps
    node = PeerNode("QmA@127.0.0.1:9098")
    for obj in ((3, (b"\x00blob",), {}), ["add", node.id, node], {"s": {1}, "f": frozenset({b""})}):
        data = pysyncobj.pickle.dumps(obj)
        assert data[1] == 5 and pysyncobj.pickle.loads(data) == obj
    assert pysyncobj.pickle.loads(pickle.dumps((b"old", b""), 2)) == (b"old", b"")  # protocol-2 journals
    safe_pickle.install()  # idempotent
    assert safe_pickle.is_installed()


@pytest.mark.parametrize("proto", [2, pickle.HIGHEST_PROTOCOL])
def test_code_execution_is_refused(tmp_path: Path, proto: int) -> None:
    marker = tmp_path / "pwned"
    data = pickle.dumps(_Exploit(marker), proto)
    before = safe_pickle.refused_count()
    with pytest.raises(pickle.UnpicklingError):
        pysyncobj.pickle.loads(data)
    with pytest.raises(pickle.UnpicklingError):
        pysyncobj.pickle.load(io.BytesIO(data))
    assert not marker.exists()
    assert safe_pickle.refused_count() == before + 2


@pytest.mark.parametrize(
    "payload",
    [
        (eval, ("1+1",)),
        (getattr, (0, "__class__")),
        (bytes, (10**9,)),
        (bytearray, (10**9,)),
    ],
)
def test_other_dangerous_globals_are_refused(payload: tuple[Any, ...]) -> None:
    class R:
        def __reduce__(self) -> tuple[Any, ...]:
            return payload

    with pytest.raises(pickle.UnpicklingError):
        safe_pickle.safe_loads(pickle.dumps(R(), 2))


def test_codecs_encode_only_with_latin1() -> None:
    import _codecs

    class R:
        def __reduce__(self) -> tuple[Any, ...]:
            return (_codecs.encode, ("eJw=", "base64"))

    with pytest.raises(pickle.UnpicklingError):
        safe_pickle.safe_loads(pickle.dumps(R(), 2))


def test_pysyncobj_messages_round_trip() -> None:
    node = PeerNode("QmPeer@127.0.0.1:9098")
    messages: list[Any] = [
        {"type": "append_entries", "term": 3, "commit_index": 7,
         "entries": [(b"\x00\x80\xffdata", 5, 3), (b"", 6, 3)], "prevLogIdx": 4, "prevLogTerm": 3},
        {"type": "append_entries", "serialized": (b"chunk\x00\xff", True, False)},
        (os.urandom(32), {"type": "next_node_idx", "next_node_idx": 8, "reset": False, "success": True}),
        ["add", "QmPeer@127.0.0.1:9098", node],
        {"self": node, "leader": None, "x": {1, 2}, "y": frozenset({"a"})},
        "peer@127.0.0.1:1",
        b"",
        1.5,
    ]
    for m in messages:
        assert safe_pickle.safe_loads(pickle.dumps(m, 2)) == m
    back = safe_pickle.safe_loads(pickle.dumps(node, 2))
    assert isinstance(back, PeerNode) and back.peer_id == "QmPeer" and back.port == 9098
