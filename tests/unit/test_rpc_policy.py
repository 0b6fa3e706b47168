"""Every RPC method of spec §13.2 has the spec's policy, and nothing else is listed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pincluster.rpc.policy import EXTENSIONS, POLICIES, SERVICES, Policy

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "cluster-spec.md"


def spec_table() -> dict[str, Policy]:
    text = SPEC.read_text()
    section = text[text.index("### 13.2") : text.index("### 13.3")]
    out: dict[str, Policy] = {}
    for m in re.finditer(r"^\| (\w+)\.([\w /]+?) \| (Closed|Trusted|Open) \|", section, re.M):
        for name in m.group(2).split("/"):
            out[f"{m.group(1)}.{name.strip()}"] = Policy(m.group(3).lower())
    return out


@pytest.mark.skipif(not SPEC.exists(), reason="spec not available")
def test_policies_match_spec_table() -> None:
    want = spec_table()
    assert len(want) >= 50  # the table parsed (guards against a silent regex miss)
    assert want == {k: v for k, v in POLICIES.items() if k not in EXTENSIONS}
    assert not set(EXTENSIONS) & set(want), "an extension must not shadow a spec method"


def test_every_method_has_a_known_service_and_policy() -> None:
    for name, pol in POLICIES.items():
        service, _, method = name.partition(".")
        assert service in SERVICES and method and isinstance(pol, Policy)
    assert POLICIES["Cluster.ID"] is Policy.OPEN
    assert POLICIES["Cluster.Pin"] is Policy.CLOSED
    assert POLICIES["Consensus.LogPin"] is Policy.TRUSTED
