"""A small declarative engine that maps frozen dataclasses to service.json objects the way Go does.

Each section is a frozen dataclass whose field names are the JSON keys, in write order. A field's metadata
(built with :func:`opt`) says how its JSON value is parsed (a :class:`Codec`), which of Go's parsing styles
applies when the key is missing or zero (:class:`Style`), when it is left out on write (:class:`Omit`), and
its environment variable name. One engine then gives load, save and ``CLUSTER_*`` overrides for every
section, so the three can never disagree.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, ClassVar, Protocol, TypeVar

from pincluster.config.secret import decode_secret, encode_secret
from pincluster.errors import ConfigError, InvalidInput
from pincluster.types.gotext import parse_go_bool
from pincluster.types.gotime import format_duration, parse_duration
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

JSON = Any  # a decoded JSON value


class Style(enum.Enum):
    """How a key that is missing (or zero) in the file is treated; see spec §7.1."""

    DEFAULT_IF_ZERO = "default if zero"  # missing, null or zero value keeps the default
    LITERAL = "literal"  # missing means Go's zero value (false, 0, empty)
    REQUIRED = "required"  # missing or zero is an error


class Omit(enum.Enum):
    """When a key is left out of the written file."""

    NEVER = "never"
    EMPTY = "empty"  # Go's ``omitempty``: left out when zero
    DEFAULT = "default"  # left out when equal to the default


class Codec(Protocol):
    """Converts one JSON value to its typed Python value and back."""

    def decode(self, value: JSON, key: str) -> Any: ...
    def encode(self, value: Any) -> JSON: ...
    def is_zero_json(self, value: JSON) -> bool: ...
    def zero(self) -> Any: ...
    def from_env(self, text: str, key: str) -> JSON: ...


def _type_error(key: str, what: str, value: JSON) -> ConfigError:
    return ConfigError(key, f"must be {what}, got {value!r}")


def _split_list(text: str) -> list[str]:
    """envconfig splits lists on commas; an empty variable is an empty list."""
    return [p.strip() for p in text.split(",")] if text.strip() else []


class StrCodec:
    def decode(self, value: JSON, key: str) -> str:
        if not isinstance(value, str):
            raise _type_error(key, "a string", value)
        return value

    def encode(self, value: Any) -> JSON:
        return value

    def is_zero_json(self, value: JSON) -> bool:
        return bool(value == "")

    def zero(self) -> str:
        return ""

    def from_env(self, text: str, key: str) -> JSON:
        return text


class IntCodec:
    def decode(self, value: JSON, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise _type_error(key, "an integer", value)
        return value

    def encode(self, value: Any) -> JSON:
        return value

    def is_zero_json(self, value: JSON) -> bool:
        return value == 0 and not isinstance(value, bool)

    def zero(self) -> int:
        return 0

    def from_env(self, text: str, key: str) -> JSON:
        try:
            return int(text.strip(), 0)
        except ValueError:
            raise _type_error(key, "an integer", text)


class FloatCodec:
    def decode(self, value: JSON, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(key, "a number", value)
        return float(value)

    def encode(self, value: Any) -> JSON:
        return value

    def is_zero_json(self, value: JSON) -> bool:
        return value == 0 and not isinstance(value, bool)

    def zero(self) -> float:
        return 0.0

    def from_env(self, text: str, key: str) -> JSON:
        try:
            return float(text.strip())
        except ValueError:
            raise _type_error(key, "a number", text)


class BoolCodec:
    def decode(self, value: JSON, key: str) -> bool:
        if not isinstance(value, bool):
            raise _type_error(key, "true or false", value)
        return value

    def encode(self, value: Any) -> JSON:
        return value

    def is_zero_json(self, value: JSON) -> bool:
        return value is False

    def zero(self) -> bool:
        return False

    def from_env(self, text: str, key: str) -> JSON:
        parsed = parse_go_bool(text.strip())
        if parsed is not None:
            return parsed
        raise _type_error(key, "true or false", text)


class DurationCodec:
    """Go duration strings; only a missing or empty string counts as "zero" (an explicit "0s" is kept)."""

    def decode(self, value: JSON, key: str) -> timedelta:
        if not isinstance(value, str):
            raise _type_error(key, 'a duration string such as "15s" or "2m0s"', value)
        try:
            return parse_duration(value)
        except InvalidInput as err:
            raise ConfigError(key, f'{err} (use a Go duration such as "500ms", "15s", "2m0s", "1h0m0s")')

    def encode(self, value: Any) -> JSON:
        return format_duration(value)

    def is_zero_json(self, value: JSON) -> bool:
        return bool(value == "")

    def zero(self) -> timedelta:
        return timedelta(0)

    def from_env(self, text: str, key: str) -> JSON:
        return text.strip()


class SecretCodec:
    """The cluster secret: hex text in the file, bytes in memory."""

    def decode(self, value: JSON, key: str) -> bytes:
        return decode_secret(value, key)

    def encode(self, value: Any) -> JSON:
        return encode_secret(value)

    def is_zero_json(self, value: JSON) -> bool:
        return bool(value == "")

    def zero(self) -> bytes:
        return b""

    def from_env(self, text: str, key: str) -> JSON:
        return text


class StrListCodec:
    """A JSON array of strings; with ``loose`` a single string is accepted too (Go's ``config.Strings``)."""

    def __init__(self, loose: bool = False, item: Callable[[str, str], object] | None = None) -> None:
        self.loose = loose
        self.item = item

    def decode(self, value: JSON, key: str) -> tuple[Any, ...]:
        if self.loose and isinstance(value, str):
            value = [value] if value else []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _type_error(key, "a list of strings" + (" or a string" if self.loose else ""), value)
        if self.item is None:
            return tuple(value)
        out = []
        for i, v in enumerate(value):
            try:
                out.append(self.item(v, key))
            except ConfigError:
                raise
            except InvalidInput as err:
                raise ConfigError(f"{key}[{i}]" if len(value) > 1 else key, str(err))
        return tuple(out)

    def encode(self, value: Any) -> JSON:
        items = [str(v) for v in value]
        if self.loose and len(items) == 1:
            return items[0]
        return items

    def is_zero_json(self, value: JSON) -> bool:
        return bool(value in ("", []))

    def zero(self) -> tuple[Any, ...]:
        return ()

    def from_env(self, text: str, key: str) -> JSON:
        return _split_list(text)


class MultiaddrCodec:
    """One multiaddr, validated when loaded."""

    def decode(self, value: JSON, key: str) -> Multiaddr:
        if not isinstance(value, str):
            raise _type_error(key, "a multiaddress string", value)
        try:
            return Multiaddr(value)
        except InvalidInput as err:
            raise ConfigError(key, str(err))

    def encode(self, value: Any) -> JSON:
        return str(value)

    def is_zero_json(self, value: JSON) -> bool:
        return bool(value == "")

    def zero(self) -> None:
        return None

    def from_env(self, text: str, key: str) -> JSON:
        return text.strip()


def _multiaddr_item(text: str, key: str) -> Multiaddr:
    return Multiaddr(text)


def _peer_item(text: str, key: str) -> PeerID:
    return PeerID.decode(text)


class StrMapCodec:
    """``{"k": "v"}``; env form ``k1:v1,k2:v2``. ``nullable`` keeps ``null`` distinct from ``{}``."""

    def __init__(self, nullable: bool = False) -> None:
        self.nullable = nullable

    def decode(self, value: JSON, key: str) -> Mapping[str, str] | None:
        if value is None and self.nullable:
            return None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise _type_error(key, 'an object of strings such as {"name": "value"}', value)
        return dict(value)

    def encode(self, value: Any) -> JSON:
        return None if value is None else dict(value)

    def is_zero_json(self, value: JSON) -> bool:
        return value is None or value == {}

    def zero(self) -> Mapping[str, str] | None:
        return None if self.nullable else {}

    def from_env(self, text: str, key: str) -> JSON:
        out: dict[str, str] = {}
        for item in _split_list(text):
            k, sep, v = item.partition(":")
            if not sep:
                raise _type_error(key, "a list of key:value pairs", text)
            out[k] = v
        return out


class HeaderMapCodec:
    """``{"Header": ["v1", "v2"]}`` (Go ``map[string][]string``); env form ``H1:v1,H2:v2``."""

    def decode(self, value: JSON, key: str) -> Mapping[str, tuple[str, ...]]:
        ok = isinstance(value, dict) and all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in value.values()
        )
        if not ok:
            raise _type_error(key, 'an object of string lists such as {"X-Header": ["value"]}', value)
        return {k: tuple(v) for k, v in value.items()}

    def encode(self, value: Any) -> JSON:
        return {k: list(v) for k, v in value.items()}

    def is_zero_json(self, value: JSON) -> bool:
        return value is None or value == {}

    def zero(self) -> Mapping[str, tuple[str, ...]]:
        return {}

    def from_env(self, text: str, key: str) -> JSON:
        out: dict[str, list[str]] = {}
        for item in _split_list(text):
            k, sep, v = item.partition(":")
            if not sep:
                raise _type_error(key, "a list of Header:value pairs", text)
            out.setdefault(k, []).append(v)
        return out


class RawCodec:
    """Any JSON kept as is (backend tuning we do not interpret but must preserve)."""

    def decode(self, value: JSON, key: str) -> JSON:
        return value

    def encode(self, value: Any) -> JSON:
        return value

    def is_zero_json(self, value: JSON) -> bool:
        return value is None

    def zero(self) -> JSON:
        return None

    def from_env(self, text: str, key: str) -> JSON:
        raise ConfigError(key, "cannot be set from the environment")


STR = StrCodec()
INT = IntCodec()
FLOAT = FloatCodec()
BOOL = BoolCodec()
DURATION = DurationCodec()
SECRET = SecretCodec()
STR_LIST = StrListCodec()
STRINGS = StrListCodec(loose=True)
MULTIADDRS = StrListCodec(loose=True, item=_multiaddr_item)
MULTIADDR_LIST = StrListCodec(item=_multiaddr_item)
PEER_IDS = StrListCodec(item=_peer_item)
MULTIADDR = MultiaddrCodec()
STR_MAP = StrMapCodec()
NULLABLE_STR_MAP = StrMapCodec(nullable=True)
HEADER_MAP = HeaderMapCodec()
RAW = RawCodec()


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    codec: Codec | None  # None: a nested section (the field's type is a Section dataclass)
    style: Style
    omit: Omit
    env: str | None  # Go struct field name when not the JSON key without underscores; "" = no variable


def opt(
    default: Any = dataclasses.MISSING,
    codec: Codec | None = None,
    *,
    style: Style = Style.DEFAULT_IF_ZERO,
    omit: Omit = Omit.NEVER,
    env: str | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare one key of a section (see module docstring)."""
    meta = {"cfg": FieldSpec(codec, style, omit, env)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def sub(cls: type[Section]) -> Any:
    """Declare a nested object (``connection_manager``, ``batching``…): missing keeps the defaults."""
    spec = FieldSpec(None, Style.DEFAULT_IF_ZERO, Omit.NEVER, None)
    return dataclasses.field(default_factory=cls, metadata={"cfg": spec})


class Section:
    """Base of every typed section. Subclasses are frozen dataclasses."""

    #: JSON parent object ("api", "consensus"…) and component key ("restapi"); ``""`` parent for ``cluster``.
    SECTION: ClassVar[str] = ""
    COMPONENT: ClassVar[str] = ""
    #: Environment variable prefix (spec §7.4).
    ENV_PREFIX: ClassVar[str] = ""

    def validate(self) -> None:
        """Check values together; raise ``ConfigError`` naming the key. Default: nothing to check."""


S = TypeVar("S", bound=Section)


def _spec(f: dataclasses.Field[Any]) -> FieldSpec:
    spec = f.metadata.get("cfg")
    assert isinstance(spec, FieldSpec), f"field {f.name} lacks opt()"
    return spec


def _nested_type(owner: type[Section], f: dataclasses.Field[Any]) -> type[Section]:
    factory = f.default_factory
    assert factory is not dataclasses.MISSING
    cls = type(factory())
    assert issubclass(cls, Section), f"{owner.__name__}.{f.name}"
    return cls


def decode_section(cls: type[S], raw: Mapping[str, JSON], base: S, key: str) -> S:
    """Build a section from its JSON object, starting from ``base`` for "default if zero" keys.

    Unknown keys are ignored (old Go configs carry removed options).
    """
    if not isinstance(raw, Mapping):
        raise _type_error(key, "a JSON object", raw)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        spec = _spec(f)
        fkey = f"{key}.{f.name}"
        value = raw.get(f.name)
        if spec.codec is None:
            nested = getattr(base, f.name)
            values[f.name] = nested if value is None else decode_section(type(nested), value, nested, fkey)
            continue
        codec = spec.codec
        if value is None:
            if spec.style is Style.LITERAL:
                values[f.name] = codec.zero()
            elif spec.style is Style.REQUIRED:
                raise ConfigError(fkey, "is undefined; it is required in service.json")
            else:
                values[f.name] = getattr(base, f.name)
            continue
        if codec.is_zero_json(value) and spec.style is not Style.LITERAL:
            if spec.style is Style.REQUIRED:
                raise ConfigError(fkey, "is empty; it is required in service.json")
            values[f.name] = getattr(base, f.name)
            continue
        values[f.name] = codec.decode(value, fkey)
    return cls(**values)


def encode_section(obj: Section) -> dict[str, JSON]:
    """The section as Go writes it: keys in declaration order, ``omitempty`` and omit-if-default applied."""
    out: dict[str, JSON] = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        spec = _spec(f)
        value = getattr(obj, f.name)
        if spec.codec is None:
            out[f.name] = encode_section(value)
            continue
        encoded = spec.codec.encode(value)
        if spec.omit is Omit.EMPTY and (value is None or spec.codec.is_zero_json(encoded) or encoded == 0):
            continue
        if spec.omit is Omit.DEFAULT:
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            if value == default:
                continue
        out[f.name] = encoded
    return out


def env_name(f: dataclasses.Field[Any]) -> str:
    """``<FIELD>`` of ``<PREFIX>_<FIELD>``: the Go struct field name upper-cased (no underscores)."""
    spec = _spec(f)
    return (spec.env or f.name.replace("_", "")).upper()


def env_overrides(cls: type[Section], prefix: str, environ: Mapping[str, str], key: str) -> dict[str, JSON]:
    """The JSON fragment that the ``<prefix>_*`` variables in ``environ`` set for this section."""
    out: dict[str, JSON] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        spec = _spec(f)
        name = f"{prefix}_{env_name(f)}"
        fkey = f"{key}.{f.name}"
        if spec.codec is None:
            nested = env_overrides(_nested_type(cls, f), name, environ, fkey)
            if nested:
                out[f.name] = nested
        elif spec.env != "" and name in environ:
            where = f"{fkey} (from ${name})"
            value = spec.codec.from_env(environ[name], where)
            if not spec.codec.is_zero_json(value):
                spec.codec.decode(value, where)  # fail here, so the error names the variable
            out[f.name] = value
    return out


def env_names(cls: type[Section], prefix: str) -> list[str]:
    """Every environment variable a section reads (for documentation and tests)."""
    names: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f"{prefix}_{env_name(f)}"
        if _spec(f).codec is None:
            names.extend(env_names(_nested_type(cls, f), name))
        elif _spec(f).env != "":
            names.append(name)
    return names


def _merge(cls: type[Section], base: dict[str, JSON], over: Mapping[str, JSON]) -> dict[str, JSON]:
    """Overlay env values on the written JSON; nested sections merge, every other value is replaced."""
    out = dict(base)
    nested = {f.name: f for f in dataclasses.fields(cls) if _spec(f).codec is None}  # type: ignore[arg-type]
    for k, v in over.items():
        if k in nested and isinstance(out.get(k), dict):
            out[k] = _merge(_nested_type(cls, nested[k]), out[k], v)
        else:
            out[k] = v
    return out


def apply_env(obj: S, prefix: str, environ: Mapping[str, str], key: str) -> S:
    """Apply ``CLUSTER_*`` overrides the way Go does: section → JSON → overrides → parsed again."""
    over = env_overrides(type(obj), prefix, environ, key)
    if not over:
        return obj
    return decode_section(type(obj), _merge(type(obj), encode_section(obj), over), obj, key)
