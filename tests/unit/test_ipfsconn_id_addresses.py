"""``id`` against a kubo that announces addresses: certhash ones (WebTransport, WebRTC) are kept, and
addresses of protocols we do not know are skipped.

``GET /id`` asks IPFS each time, so the connector must keep the good addresses and warn about a bad one once,
not on every call.
"""

from __future__ import annotations

import logging

import pytest
from tests.unit.test_ipfsconn_http import PEER, FakeKubo, conn, kubo  # noqa: F401  (kubo is a fixture)

pytestmark = pytest.mark.timeout(60)

TCP = "/ip4/127.0.0.1/tcp/4001/p2p/" + PEER
WEBTRANSPORT = (
    "/ip4/127.0.0.1/udp/4001/quic-v1/webtransport/certhash/uEiAkH5a4DPGKUuOBjYw0CgwjvcJCJMD2K_1aluKR_tpevQ"
    "/certhash/uEiAfbO0KvX1O7l5wGYUz5kSObKfcUUc0Wl3ONgYDRV2wfA/p2p/" + PEER
)
WEBRTC = "/ip4/127.0.0.1/udp/4001/webrtc-direct/certhash/uEiAkH5a4DPGKUuOBjYw0CgwjvcJCJMD2K_1aluKR_tpevQ/p2p/" + PEER
ONION = "/onion3/vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd:1234"
FUTURE = "/ip4/127.0.0.1/udp/4001/some-future-transport/p2p/" + PEER


async def test_unparsable_addresses_are_skipped_and_warned_once(
    kubo: FakeKubo,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    kubo.json("id", {"ID": PEER, "Addresses": [TCP, WEBTRANSPORT, ONION, WEBRTC, FUTURE]})
    c = conn(kubo)
    try:
        with caplog.at_level(logging.DEBUG, logger="pincluster.ipfshttp"):
            for _ in range(3):
                ident = await c.id()
                assert [str(a) for a in ident.addresses or ()] == [TCP, WEBTRANSPORT, WEBRTC]
                assert str(ident.id) == PEER and ident.error == ""
    finally:
        await c.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unparsable" in r.getMessage()]
    assert sorted(r.getMessage().split("'")[1] for r in warnings) == sorted([ONION, FUTURE])
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and "unparsable" in r.getMessage()]
    assert len(debug) == 4  # the two later calls, two addresses each
