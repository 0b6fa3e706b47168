"""``ipfs-cluster-ctl health graph``: the cluster's connectivity as Graphviz dot (spec §5.3, "Graph").

The text matches what Go's ctl writes through go-dot byte for byte (node numbering, attribute order,
comments, blank lines, no newline after the final ``}``), so tools that post-process it keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pincluster.types.models import ConnectGraph

__all__ = ["make_dot"]

_ATTR_ORDER = ("label", "group", "color", "style", "colorscheme", "fontcolor", "fontname", "shape", "peripheries")


def _shorten(pid: str) -> str:
    return pid[:2] + "*" + pid[-6:]


def _label(top: str, bottom: str) -> str:
    return f"< <B> {top} </B> <BR/> <B> {bottom} </B> >"


@dataclass
class _Vertex:
    name: str
    attrs: dict[str, str]

    def line(self) -> str:
        parts = []
        for key in _ATTR_ORDER:
            value = self.attrs.get(key, "")
            if not value:
                continue
            parts.append(f"{key}={value}" if key == "label" else f'{key}="{value}"')
        return f"{self.name} [{' '.join(parts)} ]\n"


@dataclass
class _Writer:
    """Go's ``dotWriter``: nodes are numbered in the order they are added (C/T for cluster peers, I for IPFS)."""

    graph: ConnectGraph
    all_ipfs: bool
    cluster_nodes: dict[str, _Vertex] = field(default_factory=dict)
    ipfs_nodes: dict[str, _Vertex] = field(default_factory=dict)

    def _node(self, pid: str, kind: str) -> _Vertex:
        attrs = {"group": pid, "colorscheme": "x11", "fontname": "Arial", "style": "filled", "fontcolor": "black"}
        names = {str(k): v for k, v in (self.graph.id_to_peername or {}).items()}
        if kind in ("self", "trusted", "cluster"):
            prefix = "T" if kind == "trusted" else "C"
            v = _Vertex(f"{prefix}{len(self.cluster_nodes)}", attrs)
            attrs["shape"] = "box3d"
            attrs["label"] = _label(names.get(pid, ""), _shorten(pid))
            attrs["color"] = "darkorange3" if kind == "cluster" else "orange"
            if kind == "self":
                attrs["peripheries"] = "2"
            self.cluster_nodes[pid] = v
        else:
            v = _Vertex(f"I{len(self.ipfs_nodes)}", attrs)
            attrs["shape"] = "cylinder"
            if kind == "ipfs":
                attrs["label"] = _label("IPFS", _shorten(pid))
                attrs["color"] = "turquoise3"
            else:  # a cluster peer whose IPFS daemon could not be reached
                attrs["label"] = _label("IPFS", "Errored")
                attrs["color"] = "firebrick1"
            self.ipfs_nodes[pid] = v
        return v

    def write(self) -> str:
        g = self.graph
        ipfs_known = {str(k) for k in (g.ipfs_links or {})}
        ipfs_edges: dict[str, list[str]] = {}
        for ipfs_id, links in (g.ipfs_links or {}).items():
            edges = ipfs_edges.setdefault(str(ipfs_id), [])
            for link in links:
                ps = str(link)
                if ps in ipfs_known or self.all_ipfs:
                    edges.append(ps)
                if self.all_ipfs and ps not in ipfs_edges:
                    ipfs_edges[ps] = []
        cluster_edges = {str(a): [str(b) for b in bs] for a, bs in (g.cluster_links or {}).items()}
        trust = {str(a): t for a, t in (g.cluster_trust_links or {}).items()}
        to_ipfs = {str(a): str(b) for a, b in (g.cluster_to_ipfs or {}).items()}
        me = str(g.cluster_id)
        cluster_keys = sorted(cluster_edges)

        out = ["digraph cluster {\n", "/* The nodes of the connectivity graph */\n",
               "/* The cluster-service peers */\n", "subgraph  {\n", 'rank="min"\n']
        for k in cluster_keys:
            kind = "self" if k == me else ("trusted" if trust.get(k) else "cluster")
            out.append(self._node(k, kind).line())
        out += ["}\n", "\n", "/* The ipfs peers */\n", "subgraph  {\n", 'rank="max"\n']
        for k in sorted(ipfs_edges):
            out.append(self._node(k, "ipfs").line())
        for k in cluster_keys:
            if k not in to_ipfs:
                out.append(self._node(k, "missing").line())
        out += ["}\n", "\n", "/* Edges representing active connections in the cluster */\n",
                "/* The connections among cluster-service peers */\n"]
        for k in cluster_keys:
            for peer in cluster_edges[k]:
                target = self.cluster_nodes.get(peer)
                if target is not None:  # Go would crash on a link to an unknown peer; skip it
                    out.append(f"{self.cluster_nodes[k].name} -> {target.name}\n")
        out += ["\n", "/* The connections between cluster peers and their ipfs daemons */\n"]
        for k in cluster_keys:
            src = self.cluster_nodes[k].name
            ipfs = to_ipfs.get(k)
            if ipfs is None:
                out.append(f'{src} -> {self.ipfs_nodes[k].name} [ style="dotted" ]\n')
                continue
            dst = self.ipfs_nodes.get(ipfs)
            if dst is not None:
                out.append(f"{src} -> {dst.name}\n")
        out += ["\n", "/* The swarm peer connections among ipfs daemons in the cluster */\n"]
        for k in sorted(ipfs_edges):
            for peer in ipfs_edges[k]:
                dst = self.ipfs_nodes.get(peer)
                if dst is not None:
                    out.append(f"{self.ipfs_nodes[k].name} -> {dst.name}\n")
        out.append("}")
        return "".join(out)


def make_dot(graph: ConnectGraph, all_ipfs_peers: bool = False) -> str:
    """The dot text for ``graph``; with ``all_ipfs_peers`` every swarm peer of the IPFS daemons is a node,
    otherwise only links between the cluster's own IPFS daemons are drawn."""
    return _Writer(graph, all_ipfs_peers).write()
