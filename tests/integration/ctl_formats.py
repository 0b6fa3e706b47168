"""Parsers for ``ipfs-cluster-ctl`` text output, built from the formats of spec §5.3.

Every parser consumes the *whole* output: text that matches no format is a failure, so a stray line, a
missing space or a wrong separator is caught. Peer IDs, CIDs and timestamps are patterns; the rest is literal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

B58 = "[1-9A-HJ-NP-Za-km-z]"
PEER = rf"(?:12D3KooW{B58}{{44}}|Qm{B58}{{44}})"
CID_RE = rf"(?:Qm{B58}{{44}}|b[a-z2-7]{{58,200}})"  # v0, or v1 in base32 (longer with other hashes)
#: RFC3339Nano as Go prints it: the fraction loses its trailing zeros (and its dot when it is zero).
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{0,8}[1-9])?(?:Z|[+-]\d\d:\d\d)"
CLOCK = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
MADDR = rf"/ip4/127\.0\.0\.1/tcp/\d+/p2p/{PEER}"
_UNIT = r"(?:second|minute|hour|day|week|month|year)"
#: go-humanize's relative times.
HUMAN_TIME = rf"(?:now|1 {_UNIT} (?:from now|ago)|\d+ {_UNIT}s (?:from now|ago)|a long while (?:from now|ago))"
HUMAN_BYTES = r"(?:\d B|\d\.\d (?:kB|MB|GB|TB|PB|EB)|\d+ (?:B|kB|MB|GB|TB|PB|EB))"
STATUS = (r"(?:UNDEFINED|CLUSTER_ERROR|PIN_ERROR|UNPIN_ERROR|ERROR|PINNED|PINNING|UNPINNING|UNPINNED|REMOTE"
          r"|PIN_QUEUED|UNPIN_QUEUED|QUEUED|SHARDED|UNEXPECTEDLY_UNPINNED)")


def full(pattern: str, text: str, what: str) -> re.Match[str]:
    m = re.fullmatch(pattern, text)
    assert m is not None, f"{what} does not match the spec format:\n{text!r}\npattern: {pattern}"
    return m


# --- ID ---------------------------------------------------------------------------------------------------
@dataclass
class IDText:
    id: str
    peername: str
    sees: int
    addresses: list[str]
    ipfs_id: str
    ipfs_addresses: list[str]


_ID = re.compile(
    rf"(?P<id>{PEER}) \| (?P<name>[^|\n]*) \| Sees (?P<sees>\d+) other peers\n"
    rf"  > Addresses:\n(?P<addrs>(?:    - {MADDR}\n)*)"
    rf"  > IPFS: (?P<ipfs>{PEER})\n(?P<iaddrs>(?:    - {MADDR}\n)*)"
)
_ID_ERROR = re.compile(rf"(?P<id>{PEER}) \| ERROR: (?P<error>[^\n]+)\n")


def _bullets(block: str) -> list[str]:
    return [line[len("    - "):] for line in block.splitlines()]


def parse_ids(text: str) -> list[IDText | tuple[str, str]]:
    """Consecutive ID blocks (``id``, ``peers ls``); an errored peer is ``(id, error)``."""
    out: list[IDText | tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _ID.match(text, pos)
        if m is not None:
            item = IDText(m["id"], m["name"], int(m["sees"]), _bullets(m["addrs"]), m["ipfs"], _bullets(m["iaddrs"]))
            assert item.addresses == sorted(item.addresses), "addresses must be sorted"
            assert item.ipfs_addresses == sorted(item.ipfs_addresses), "IPFS addresses must be sorted"
            out.append(item)
        else:
            e = _ID_ERROR.match(text, pos)
            assert e is not None, f"not an ID block at offset {pos}:\n{text[pos:pos + 400]!r}"
            m = e
            out.append((e["id"], e["error"]))
        pos = m.end()
    return out


# --- GlobalPinInfo ------------------------------------------------------------------------------------------
@dataclass
class PeerStatus:
    who: str
    status: str
    error: str
    timestamp: str
    attempts: int
    priority: bool


@dataclass
class GPIText:
    cid: str
    name: str
    peers: list[PeerStatus]

    def statuses(self) -> dict[str, str]:
        return {p.who: p.status for p in self.peers}


_GPI_HEAD = re.compile(rf"(?P<cid>{CID_RE})(?: \| (?P<name>[^\n]*))?:\n")
_GPI_LINE = re.compile(
    rf"    > (?P<who>\S+) *: (?P<status>{STATUS})(?:: (?P<error>[^\n]*?))?"
    rf" \| (?P<ts>{TS}) \| Attempts: (?P<att>\d+) \| Priority: (?P<prio>true|false)\n"
)


def parse_gpis(text: str, order: dict[str, str] | None = None) -> list[GPIText]:
    """GlobalPinInfo blocks; with ``order`` (peername -> peer ID), checks that lines are sorted by peer ID."""
    out: list[GPIText] = []
    pos = 0
    while pos < len(text):
        h = _GPI_HEAD.match(text, pos)
        assert h is not None, f"not a status block at offset {pos}:\n{text[pos:pos + 400]!r}"
        pos = h.end()
        item = GPIText(h["cid"], h["name"] or "", [])
        while (m := _GPI_LINE.match(text, pos)) is not None:
            who = m["who"]
            assert m.group(0).startswith(f"    > {who:<20} : "), f"peer column is not %-20s: {m.group(0)!r}"
            item.peers.append(PeerStatus(who, m["status"], m["error"] or "", m["ts"], int(m["att"]),
                                         m["prio"] == "true"))
            pos = m.end()
        if order is not None:
            keys = [order.get(p.who, p.who) for p in item.peers]
            assert keys == sorted(keys), f"peers of {item.cid} are not sorted by peer ID: {keys}"
        out.append(item)
    return out


# --- Pin ------------------------------------------------------------------------------------------------------
@dataclass
class PinText:
    cid: str
    name: str
    type: str
    rmin: int
    rmax: int
    allocations: list[str] | None  # None: everywhere
    depth: str
    metadata: bool
    expires: str
    added: str


_PIN = re.compile(
    rf"(?P<cid>{CID_RE}) \| (?P<name>[^|\n]*) \| (?P<type>(?:PIN|META-PIN|CLUSTERDAG-PIN|SHARD-PIN)(?:-DIRECT)?) \| "
    rf"(?:(?P<every>Repl\. Factor: -1 \| Allocations: \[everywhere\])"
    rf"|Repl\. Factor: (?P<rmin>-?\d+)--(?P<rmax>-?\d+) \| Allocations: \[(?P<allocs>(?:{PEER}(?: {PEER})*)?)\])"
    rf" \| (?P<depth>Direct|Recursive|Recursive-\d+) \| Metadata: (?P<meta>yes|no)"
    rf" \| Exp: (?P<exp>∞|{CLOCK}) \| Added: (?P<added>unknown|{CLOCK})\n"
)


def parse_pins(text: str) -> list[PinText]:
    out: list[PinText] = []
    pos = 0
    while pos < len(text):
        m = _PIN.match(text, pos)
        assert m is not None, f"not a pin line at offset {pos}:\n{text[pos:pos + 400]!r}"
        allocs = None if m["every"] else (m["allocs"].split() if m["allocs"] else [])
        if allocs is not None:
            assert allocs == sorted(allocs), "allocations must be sorted"
        out.append(PinText(m["cid"], m["name"], m["type"], -1 if m["every"] else int(m["rmin"]),
                           -1 if m["every"] else int(m["rmax"]), allocs, m["depth"], m["meta"] == "yes",
                           m["exp"], m["added"]))
        pos = m.end()
    return out


# --- add, metrics, alerts, gc, errors -----------------------------------------------------------------------------
def parse_added(text: str) -> list[tuple[str, str]]:
    """``added <cid> <name>`` lines (the name may be empty, the space before it stays)."""
    return [(m["cid"], m["name"]) for m in
            (full(rf"added (?P<cid>{CID_RE}) (?P<name>[^\n]*)", line, "add line") for line in text.split("\n")[:-1])]


def parse_quiet(text: str) -> list[str]:
    assert text.endswith("\n"), repr(text)
    return [full(CID_RE, line, "quiet add line").group(0) for line in text.split("\n")[:-1]]


def parse_metrics(text: str, name: str) -> list[tuple[str, str]]:
    value = HUMAN_BYTES if name == "freespace" else r"[^\n]*"
    pat = rf"(?P<peer>{PEER}) \| {re.escape(name)}: (?P<value>{value}) \| Expires in: {HUMAN_TIME}"
    return [(m["peer"], m["value"]) for m in (full(pat, line, "metric line") for line in text.split("\n")[:-1])]


def parse_alerts(text: str) -> list[tuple[str, str]]:
    pat = rf"(?P<peer>{PEER}): (?P<name>[a-z:]+)\. Expired at: {HUMAN_TIME}\. Triggered at: {HUMAN_TIME}"
    return [(m["peer"], m["name"]) for m in (full(pat, line, "alert line") for line in text.split("\n")[:-1])]


def parse_repo_gc(text: str) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    pos = 0
    head = re.compile(r"(?P<who>\S+) *(?: \| ERROR: [^\n]*)?\n  > CIDs:\n")
    line = re.compile(rf"    - (?:(?P<cid>{CID_RE})|ERROR: [^\n]*)\n")
    while pos < len(text):
        h = head.match(text, pos)
        assert h is not None, f"not a gc block at offset {pos}:\n{text[pos:pos + 300]!r}"
        assert h.group(0).startswith(f"{h['who']:<15}"), "peer column is not %-15s"
        pos = h.end()
        cids = []
        while (m := line.match(text, pos)) is not None:
            cids.append(m["cid"] or "")
            pos = m.end()
        out.append((h["who"], cids))
    return out


def parse_error(text: str) -> tuple[int, str]:
    m = full(r"An error occurred:\n  Code: (?P<code>\d+)\n  Message: (?P<msg>[^\n]+)\n", text, "API error")
    return int(m["code"]), m["msg"]


# --- JSON -------------------------------------------------------------------------------------------------------
def json_stream(text: str) -> list[Any]:
    """Objects printed one after another (Go's ``MarshalIndent`` per item), each checked to be exactly
    4-space indented JSON with a final newline."""
    dec = json.JSONDecoder()
    out: list[Any] = []
    pos = 0
    rebuilt = []
    while pos < len(text):
        obj, end = dec.raw_decode(text, pos)
        assert text[end:end + 1] == "\n", f"JSON item not followed by a newline at {end}"
        out.append(obj)
        rebuilt.append(json.dumps(obj, indent=4, ensure_ascii=False) + "\n")
        pos = end + 1
    assert "".join(rebuilt) == text, "JSON output is not Go's MarshalIndent(obj, \"\", \"    \") layout"
    return out


# --- Graphviz dot -----------------------------------------------------------------------------------------------
@dataclass
class Dot:
    cluster_nodes: dict[str, tuple[str, str]]  # node name -> (peer id, color)
    ipfs_nodes: dict[str, str]  # node name -> ipfs peer id
    cluster_edges: list[tuple[str, str]]
    to_ipfs_edges: list[tuple[str, str]]
    ipfs_edges: list[tuple[str, str]]
    self_node: str


_ATTRS = ('style="filled" colorscheme="x11" fontcolor="black" fontname="Arial"')


def parse_dot(text: str) -> Dot:
    """``health graph``: the exact section layout of go-dot, node lines with attributes in Go's order."""
    cnode = re.compile(
        rf'(?P<n>[CT]\d+) \[label=< <B> (?P<name>[^<]*) </B> <BR/> <B> (?P<short>\w\w\*\w{{6}}) </B> > '
        rf'group="(?P<id>{PEER})" color="(?P<color>orange|darkorange3)" {_ATTRS} shape="box3d"'
        rf'(?P<self> peripheries="2")? \]'
    )
    inode = re.compile(
        rf'(?P<n>I\d+) \[label=< <B> IPFS </B> <BR/> <B> (?P<short>\w\w\*\w{{6}}|Errored) </B> > '
        rf'group="(?P<id>{PEER})" color="(?P<color>turquoise3|firebrick1)" {_ATTRS} shape="cylinder" \]'
    )
    edge = re.compile(r"(?P<a>[CTI]\d+) -> (?P<b>[CTI]\d+)(?: \[ style=\"dotted\" \])?")
    assert not text.endswith("\n"), "go-dot writes no newline after the final }"
    lines = text.split("\n")
    head = ["digraph cluster {", "/* The nodes of the connectivity graph */", "/* The cluster-service peers */",
            "subgraph  {", 'rank="min"']
    assert lines[:5] == head, lines[:5]
    i = 5
    dot = Dot({}, {}, [], [], [], "")
    while lines[i] != "}":
        m = full(cnode.pattern, lines[i], "cluster node")
        assert m["short"] == m["id"][:2] + "*" + m["id"][-6:]
        assert m["n"][1:] == str(len(dot.cluster_nodes)), "cluster nodes are numbered in order"
        dot.cluster_nodes[m["n"]] = (m["id"], m["color"])
        if m["self"]:
            assert not dot.self_node and m["color"] == "orange" and m["n"].startswith("C")
            dot.self_node = m["n"]
        i += 1
    ids = [v[0] for v in dot.cluster_nodes.values()]
    assert ids == sorted(ids), "cluster peers are listed in sorted order"
    assert lines[i:i + 5] == ["}", "", "/* The ipfs peers */", "subgraph  {", 'rank="max"'], lines[i:i + 5]
    i += 5
    while lines[i] != "}":
        m = full(inode.pattern, lines[i], "ipfs node")
        assert m["n"][1:] == str(len(dot.ipfs_nodes))
        dot.ipfs_nodes[m["n"]] = m["id"]
        i += 1
    sections = [("/* Edges representing active connections in the cluster */",
                 "/* The connections among cluster-service peers */", dot.cluster_edges),
                (None, "/* The connections between cluster peers and their ipfs daemons */", dot.to_ipfs_edges),
                (None, "/* The swarm peer connections among ipfs daemons in the cluster */", dot.ipfs_edges)]
    assert lines[i:i + 2] == ["}", ""], lines[i:i + 2]
    i += 2
    for first, title, edges in sections:
        if first is not None:
            assert lines[i] == first, lines[i]
            i += 1
        assert lines[i] == title, lines[i]
        i += 1
        while lines[i] not in ("", "}"):
            m = full(edge.pattern, lines[i], "edge")
            edges.append((m["a"], m["b"]))
            i += 1
        if lines[i] == "":
            i += 1
    assert lines[i:] == ["}"], lines[i:]
    return dot
