"""Multiaddrs in their text form.

pincluster only ever exchanges multiaddrs as text (JSON, config files, the peerstore), so they are parsed and
validated from text and kept as a canonical string plus the list of ``(protocol, value)`` parts.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from pincluster.errors import InvalidInput
from pincluster.types.cid import multibase_decode, multihash_decode
from pincluster.types.peer import PeerID


class InvalidMultiaddr(InvalidInput):
    """A multiaddr could not be parsed."""


# protocol name -> kind of value: None (no value), or a validator key
_PROTOCOLS: Final[dict[str, str | None]] = {
    "ip4": "ip4",
    "ip6": "ip6",
    "ip6zone": "text",
    "dns": "dns",
    "dns4": "dns",
    "dns6": "dns",
    "dnsaddr": "dns",
    "tcp": "port",
    "udp": "port",
    "p2p": "peer",
    "ipfs": "peer",
    "unix": "path",
    "quic": None,
    "quic-v1": None,
    "webtransport": None,
    "certhash": "multibase",
    "webrtc-direct": None,
    "webrtc": None,
    "ws": None,
    "wss": None,
    "tls": None,
    "noise": None,
    "http": None,
    "https": None,
    "p2p-circuit": None,
    "sni": "dns",
}


def _check(proto: str, value: str, text: str) -> str:
    kind = _PROTOCOLS[proto]
    try:
        if kind == "ip4":
            return str(ipaddress.IPv4Address(value))
        if kind == "ip6":
            return str(ipaddress.IPv6Address(value))
        if kind == "port":
            if not value.isdigit() or not 0 <= int(value) <= 65535:
                raise ValueError(f"port {value!r} out of range 0-65535")
            return str(int(value))
        if kind == "peer":
            return str(PeerID.decode(value))
        if kind == "dns":
            if not value or len(value) > 253 or any(c.isspace() or c == "/" for c in value):
                raise ValueError(f"invalid host name {value!r}")
            return value
        if kind == "multibase":  # /certhash/<multibase multihash>, as kubo announces for WebTransport/WebRTC
            multihash_decode(multibase_decode(value))
            return value
        if kind in ("text", "path"):
            if not value:
                raise ValueError("empty value")
            return value
    except (ValueError, InvalidInput) as exc:
        raise InvalidMultiaddr(f"invalid multiaddr {text!r}: /{proto}: {exc}") from None
    raise AssertionError(kind)


class Multiaddr:
    """An immutable, validated multiaddr (``/ip4/127.0.0.1/tcp/9096/p2p/12D3KooW…``)."""

    __slots__ = ("_parts", "_text")
    _text: str
    _parts: tuple[tuple[str, str | None], ...]

    def __init__(self, text: str) -> None:
        if isinstance(text, Multiaddr):
            object.__setattr__(self, "_text", text._text)
            object.__setattr__(self, "_parts", text._parts)
            return
        if not isinstance(text, str) or not text.startswith("/"):
            raise InvalidMultiaddr(f"invalid multiaddr {text!r}: must begin with /")
        tokens = text.split("/")[1:]
        if tokens and tokens[-1] == "":
            tokens.pop()
        parts: list[tuple[str, str | None]] = []
        i = 0
        while i < len(tokens):
            proto = tokens[i]
            if proto not in _PROTOCOLS:
                raise InvalidMultiaddr(f"invalid multiaddr {text!r}: unknown protocol {proto!r}")
            kind = _PROTOCOLS[proto]
            if kind is None:
                parts.append((proto, None))
                i += 1
                continue
            if kind == "path":  # /unix takes the rest of the address
                value = "/" + "/".join(tokens[i + 1 :])
                parts.append((proto, _check(proto, value if value != "/" else "", text)))
                break
            if i + 1 >= len(tokens):
                raise InvalidMultiaddr(f"invalid multiaddr {text!r}: /{proto} needs a value")
            parts.append(("p2p" if proto == "ipfs" else proto, _check(proto, tokens[i + 1], text)))
            i += 2
        if not parts:
            raise InvalidMultiaddr(f"invalid multiaddr {text!r}: empty")
        object.__setattr__(self, "_parts", tuple(parts))
        object.__setattr__(self, "_text", _render(parts))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Multiaddr is immutable")

    @classmethod
    def from_host_port(cls, host: str, port: int, transport: str = "tcp") -> Multiaddr:
        """``/ip4|ip6|dns/<host>/tcp/<port>`` for a host name or address."""
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
            proto = "ip4" if ip.version == 4 else "ip6"
            host = str(ip)
        except ValueError:
            proto = "dns"
        return cls(f"/{proto}/{host}/{transport}/{port}")

    @property
    def protocols(self) -> tuple[tuple[str, str | None], ...]:
        return self._parts

    def value_for(self, proto: str) -> str | None:
        for p, v in self._parts:
            if p == proto:
                return v
        return None

    def has(self, proto: str) -> bool:
        return any(p == proto for p, _ in self._parts)

    @property
    def peer_id(self) -> PeerID | None:
        value = self.value_for("p2p")
        return PeerID.decode(value) if value else None

    def without_p2p(self) -> Multiaddr:
        """The address with a trailing ``/p2p/<id>`` removed."""
        if self._parts[-1][0] != "p2p" or len(self._parts) == 1:
            return self
        return Multiaddr(_render(self._parts[:-1]))

    def with_p2p(self, pid: PeerID) -> Multiaddr:
        base = self.without_p2p()
        return Multiaddr(f"{base._text}/p2p/{pid}")

    def tcp_host_port(self) -> tuple[str, int]:
        """Host and port to dial for an ``/ip4|ip6|dns*/…/tcp/…`` address."""
        host: str | None = None
        port: int | None = None
        for p, v in self._parts:
            if p in ("ip4", "ip6", "dns", "dns4", "dns6") and host is None:
                host = v
            elif p == "tcp" and port is None and v is not None:
                port = int(v)
        if host is None or port is None:
            raise InvalidMultiaddr(f"multiaddr {self._text!r} is not a TCP address (/ip4|ip6|dns/…/tcp/…)")
        return host, port

    def is_unix(self) -> bool:
        return self._parts[0][0] == "unix"

    def unix_path(self) -> str:
        value = self.value_for("unix")
        if value is None:
            raise InvalidMultiaddr(f"multiaddr {self._text!r} is not a /unix address")
        return value

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Multiaddr({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Multiaddr) and other._text == self._text

    def __hash__(self) -> int:
        return hash(self._text)

    def __lt__(self, other: Multiaddr) -> bool:
        return self._text < other._text

    def __reduce__(self) -> tuple[type[Multiaddr], tuple[str]]:
        return (Multiaddr, (self._text,))


def _render(parts: tuple[tuple[str, str | None], ...] | list[tuple[str, str | None]]) -> str:
    """Canonical text of parsed parts (``/unix`` carries its path, which begins with ``/``)."""
    out = []
    for p, v in parts:
        if p == "unix":
            out.append(f"/unix{v}")
        else:
            out.append(f"/{p}" if v is None else f"/{p}/{v}")
    return "".join(out)
