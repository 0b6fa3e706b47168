"""``health graph``: the Graphviz dot text of Go's ctl, byte for byte (spec §5.3 "Graph")."""

from __future__ import annotations

from pincluster.cli.dot import make_dot
from pincluster.types.models import ConnectGraph
from pincluster.types.peer import PeerID

P1 = PeerID.decode("QmUBuxVHoNNjfmNpTad36UeaFQv3gXAtCv9r6KhmeqhEhD")
P2 = PeerID.decode("QmV35LjbEGPfN7KfMAJp43VV2enwXqqQf5esx4vUcgHDQJ")
P3 = PeerID.decode("QmZ2ckU7G35MYyJgMTwMUnicsGqSy3YUxGBX7qny6MQmJu")
I4 = PeerID.decode("QmXbiVZd93SLiu9TAm21F2y9JwGiFLydbEVkPBaMR3DZDV")
I5 = PeerID.decode("QmPFKAGZbUjdzt8BBx8VTWCe9UeUQVcoqHFehSPzN5LSsq")
I6 = PeerID.decode("QmbU7273zH6jxwDe2nqRmEm2rp5PpqP2xeQr2xCmwbBsuL")
I7 = PeerID.decode("QmQsdAdCHs4PRLi5tcoLfasYppryqQENxgAy4b2aS8xccb")

COMMON = 'style="filled" colorscheme="x11" fontcolor="black" fontname="Arial"'


def _cluster(name: str, peername: str, short: str, pid: PeerID, color: str, extra: str = "") -> str:
    return (f'{name} [label=< <B> {peername} </B> <BR/> <B> {short} </B> > group="{pid}" color="{color}" {COMMON}'
            f' shape="box3d"{extra} ]\n')


def _ipfs(name: str, short: str, pid: PeerID, color: str = "turquoise3") -> str:
    return (f'{name} [label=< <B> IPFS </B> <BR/> <B> {short} </B> > group="{pid}" color="{color}" {COMMON}'
            ' shape="cylinder" ]\n')


def graph(**kw: object) -> ConnectGraph:
    base: dict[str, object] = dict(
        cluster_id=P1,
        id_to_peername={P1: "one", P2: "two", P3: "three"},
        cluster_links={P1: (P2, P3), P2: (P1, P3), P3: (P1, P2)},
        cluster_trust_links={P1: False, P2: True, P3: False},
        ipfs_links={I4: (I5, I6, I7), I5: (I4, I6), I6: (I4, I5)},
        cluster_to_ipfs={P1: I4, P2: I5, P3: I6},
    )
    base.update(kw)
    return ConnectGraph(**base)  # type: ignore[arg-type]


HEAD = ("digraph cluster {\n/* The nodes of the connectivity graph */\n/* The cluster-service peers */\n"
        'subgraph  {\nrank="min"\n')
NODES = (_cluster("C0", "one", "Qm*eqhEhD", P1, "orange", ' peripheries="2"')
         + _cluster("T1", "two", "Qm*cgHDQJ", P2, "orange")
         + _cluster("C2", "three", "Qm*6MQmJu", P3, "darkorange3"))
EDGES_CLUSTER = ("/* Edges representing active connections in the cluster */\n"
                 "/* The connections among cluster-service peers */\n"
                 "C0 -> T1\nC0 -> C2\nT1 -> C0\nT1 -> C2\nC2 -> C0\nC2 -> T1\n\n")


def test_graph_only_cluster_ipfs_links() -> None:
    # sorted IPFS keys: I5 (QmPF…), I4 (QmXb…), I6 (Qmb…)
    expected = (
        HEAD + NODES + "}\n\n/* The ipfs peers */\nsubgraph  {\nrank=\"max\"\n"
        + _ipfs("I0", "Qm*N5LSsq", I5) + _ipfs("I1", "Qm*R3DZDV", I4) + _ipfs("I2", "Qm*wbBsuL", I6)
        + "}\n\n" + EDGES_CLUSTER
        + "/* The connections between cluster peers and their ipfs daemons */\nC0 -> I1\nT1 -> I0\nC2 -> I2\n\n"
        + "/* The swarm peer connections among ipfs daemons in the cluster */\n"
        + "I0 -> I1\nI0 -> I2\nI1 -> I0\nI1 -> I2\nI2 -> I1\nI2 -> I0\n}"
    )
    assert make_dot(graph()) == expected


def test_graph_all_ipfs_peers_and_errored_ipfs() -> None:
    g = graph(cluster_to_ipfs={P1: I4, P2: I5}, ipfs_links={I4: (I5, I7), I5: (I4,)})
    # with --all-ipfs-peers: nodes I7 (QmQs…) too; sorted keys: I5 QmPF, I7 QmQs, I4 QmXb
    expected = (
        HEAD + NODES + "}\n\n/* The ipfs peers */\nsubgraph  {\nrank=\"max\"\n"
        + _ipfs("I0", "Qm*N5LSsq", I5) + _ipfs("I1", "Qm*S8xccb", I7) + _ipfs("I2", "Qm*R3DZDV", I4)
        + f'I3 [label=< <B> IPFS </B> <BR/> <B> Errored </B> > group="{P3}" color="firebrick1" {COMMON}'
        + ' shape="cylinder" ]\n'
        + "}\n\n" + EDGES_CLUSTER
        + "/* The connections between cluster peers and their ipfs daemons */\n"
        + 'C0 -> I2\nT1 -> I0\nC2 -> I3 [ style="dotted" ]\n\n'
        + "/* The swarm peer connections among ipfs daemons in the cluster */\n"
        + "I0 -> I2\nI2 -> I0\nI2 -> I1\n}"
    )
    assert make_dot(g, all_ipfs_peers=True) == expected
    # without it, the link to the outside daemon I7 is dropped and I7 is no node
    text = make_dot(g)
    assert "Qm*S8xccb" not in text
    assert text.endswith("/* The swarm peer connections among ipfs daemons in the cluster */\nI0 -> I1\nI1 -> I0\n}")


def test_graph_empty_and_unknown_links() -> None:
    g = ConnectGraph(cluster_id=P1, cluster_links={P1: (P2,)}, cluster_to_ipfs={})
    text = make_dot(g)
    among = text.split("cluster-service peers */\n")[2].split("/* The connections between")[0]
    assert among == "\n"  # P2 has no node: no edge, and no crash
    assert 'C0 -> I0 [ style="dotted" ]' in text
    assert not text.endswith("\n")
