"""log.py line format and levels; lock.py's exclusive lock and its exact message."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pincluster.errors import InvalidInput, LockError
from pincluster.lock import ClusterLock
from pincluster.log import parse_loglevel, reset_logging, setup_logging

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARN|ERROR|FATAL) ([\w.-]+): (.*) ([\w.]+\.py):(\d+)$")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    yield buf
    reset_logging()


def _lines(buf: io.StringIO) -> list[str]:
    return [line for line in buf.getvalue().splitlines() if line]


def test_line_format(stream: io.StringIO) -> None:
    setup_logging("info", stream=stream)
    logging.getLogger("pincluster.raft").info("leader is %s", "peer1")
    (line,) = _lines(stream)
    m = LINE.match(line)
    assert m, line
    assert m.group(1) == "INFO" and m.group(2) == "raft" and m.group(3) == "leader is peer1"
    assert m.group(4) == "test_config_log.py" and int(m.group(5)) > 0


def test_levels_per_facility(stream: io.StringIO) -> None:
    setup_logging("warn,restapi:debug", stream=stream)
    logging.getLogger("pincluster.restapi").debug("restapi debug")
    logging.getLogger("pincluster.cluster").info("cluster info hidden")
    logging.getLogger("pincluster.cluster").warning("cluster warn")
    logging.getLogger("aiohttp.access").info("dependency info hidden")
    lines = _lines(stream)
    assert [LINE.match(x).group(3) for x in lines] == ["restapi debug", "cluster warn"]  # type: ignore[union-attr]
    assert " WARN cluster: " in lines[1]


def test_debug_makes_everything_verbose(stream: io.StringIO) -> None:
    setup_logging("error", debug=True, stream=stream)
    logging.getLogger("pincluster.pintracker").debug("a")
    logging.getLogger("aiohttp.client").debug("b")
    logging.getLogger("pysyncobj").debug("c")
    assert [LINE.match(x).group(2) for x in _lines(stream)] == ["pintracker", "aiohttp.client", "pysyncobj"]  # type: ignore[union-attr]


def test_setup_twice_replaces(stream: io.StringIO) -> None:
    setup_logging("info,raft:debug", stream=stream)
    setup_logging("info", stream=stream)
    logging.getLogger("pincluster.raft").debug("hidden now")
    logging.getLogger("pincluster.raft").error("shown once")
    assert len(_lines(stream)) == 1


def test_parse_loglevel() -> None:
    lv = parse_loglevel("info,cluster:debug,pintracker:DEBUG")
    assert lv.default == logging.INFO
    assert lv.facilities == {"cluster": logging.DEBUG, "pintracker": logging.DEBUG}
    assert parse_loglevel(None).default == logging.INFO
    assert parse_loglevel("error").default == logging.ERROR
    with pytest.raises(InvalidInput, match="invalid log level 'loud'"):
        parse_loglevel("loud")
    with pytest.raises(InvalidInput, match="empty facility"):
        parse_loglevel(":debug")


def test_lock_is_exclusive_with_exact_message(tmp_path: Path) -> None:
    folder = tmp_path / "cfg"
    with ClusterLock(folder) as first:
        assert first.locked
        with pytest.raises(LockError) as info:
            ClusterLock(folder).acquire()
    path = folder / "cluster.lock"
    assert str(info.value) == (
        f"lock {path}: someone else has the lock. If no other ipfs-cluster-service process is running, "
        f"remove {path}, or make sure that the config folder is writable for the user running "
        "ipfs-cluster-service."
    )
    # released: can be taken again
    second = ClusterLock(folder)
    second.acquire()
    second.release()
    assert not second.locked


def test_lock_unwritable_folder_is_a_lock_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LockError, match="make sure that the config folder is writable"):
        ClusterLock(blocker / "sub").acquire()
