"""Tracing (``observations.tracing``, ``daemon --tracing``): spans of what a peer does, sent to a Jaeger agent.

Go's peer exports OpenCensus spans to the agent at ``jaeger_agent_endpoint`` (UDP, jaeger.thrift in the compact
protocol), named after the component and the operation (``cluster/Pin``, ``consensus/LogPin``), sampled with
``sampling_prob`` and labelled ``service_name``. We send the same through OpenTelemetry's Jaeger Thrift exporter,
so a Jaeger agent (or all-in-one) that shows Go's traces shows ours. With ``otlp_endpoint`` (a pincluster
extension) spans go to an OTLP/HTTP collector instead, the protocol OpenTelemetry keeps developing.

Components call :func:`span` and never import OpenTelemetry: when tracing is off (the default) ``span`` hands
back a shared null context, one function call on the hot paths. The OpenTelemetry packages are the ``tracing``
extra (``pip install 'pincluster[tracing]'``); a peer configured to trace without them refuses to start and says
what to install.

Traces cross peers as Go's do: an RPC request carries the caller's trace context (W3C ``traceparent``,
:func:`context_header`), and the called peer serves the call in a span of that trace (:func:`remote_span`).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable
from typing import Any, Final

from pincluster.config.sections import TracingConfig
from pincluster.errors import ConfigError
from pincluster.types.multiaddr import Multiaddr

__all__ = ["Tracing", "active", "agent_address", "context_header", "remote_span", "span"]

log = logging.getLogger("pincluster.observations")

_NULL: Final = contextlib.nullcontext()
_tracer: Any = None  # an OpenTelemetry tracer while a Tracing runs
_current_span: Any = None  # opentelemetry.trace.get_current_span, imported when tracing starts
_propagator: Any = None  # the W3C trace context propagator, likewise
_server_kind: Any = None  # opentelemetry.trace.SpanKind.SERVER

#: How often finished spans are sent to the agent (OpenTelemetry's default is 5 s; Go's exporter bundles for 1 s).
_EXPORT_EVERY_MS: Final = 1000


def active() -> bool:
    """Whether spans are recorded."""
    return _tracer is not None


def span(name: str | Callable[[], str], **attributes: object) -> contextlib.AbstractContextManager[Any]:
    """A span named ``name`` around the ``with`` body while tracing runs (nested under the current one; an
    exception leaving the body is recorded and marks it failed); a null context otherwise. A name that costs
    something to build (a route, an endpoint) is given as a function, called only when a span is made;
    attribute values other than text and numbers (a CID, a peer ID) are recorded as their text, likewise.

    Not for a body that spans the ``yield`` of an async generator: the span's context would be left in
    another task's context."""
    tracer = _tracer
    if tracer is None:
        return _NULL
    current = _current_span()
    if not current.is_recording() and current.get_span_context().is_valid:
        return _NULL  # inside a trace the sampler dropped: its spans would be dropped too (a span costs ~20 µs)
    return _start(tracer, name, attributes)


def _start(tracer: Any, name: str | Callable[[], str], attributes: dict[str, object],
           **kwargs: Any) -> contextlib.AbstractContextManager[Any]:
    """The span context manager: the name built now, attribute values other than text and numbers as text."""
    attrs = {k: v if isinstance(v, str | int | float | bool) else str(v) for k, v in attributes.items()}
    cm: contextlib.AbstractContextManager[Any] = tracer.start_as_current_span(
        name if isinstance(name, str) else name(), attributes=attrs or None, **kwargs)
    return cm


def context_header() -> str | None:
    """The current trace context as a W3C ``traceparent`` value, for a call to another peer to carry (None when
    tracing is off or no span is current). A trace the sampler dropped is carried too, so that the called peer
    drops its part as well."""
    if _tracer is None or not _current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def remote_span(name: str | Callable[[], str], header: str | None,
                **attributes: object) -> contextlib.AbstractContextManager[Any]:
    """A span, made by the peer serving a call, in the trace of the calling peer (``header``: the value its
    :func:`context_header` gave). Null when tracing is off, when the call carried no trace (periodic calls
    would otherwise each start a trace of their own), or when the caller's trace was not sampled."""
    tracer = _tracer
    if tracer is None or not header:
        return _NULL
    parent = _propagator.extract({"traceparent": header})
    caller = _current_span(parent).get_span_context()
    if not caller.is_valid or not caller.trace_flags.sampled:
        return _NULL
    return _start(tracer, name, attributes, context=parent, kind=_server_kind)


def _missing(exc: ImportError) -> ConfigError:
    return ConfigError("tracing.enable_tracing", f"tracing needs the OpenTelemetry packages ({exc}): install them "
                       "with pip install 'pincluster[tracing]', or turn tracing off")


def agent_address(addr: Multiaddr) -> tuple[str, int]:
    """``/ip4/H/udp/P`` → (H, P); the wildcard address means this machine (Go's default ``/ip4/0.0.0.0/udp/6831``
    reaches an agent running beside the peer)."""
    port = addr.value_for("udp")
    host = addr.value_for("ip4") or addr.value_for("ip6") or addr.value_for("dns") or addr.value_for("dns4") \
        or addr.value_for("dns6")
    if port is None or host is None:
        raise ConfigError("tracing.jaeger_agent_endpoint",
                          f"{addr}: need a UDP address such as /ip4/127.0.0.1/udp/6831")
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return host, int(port)


class Tracing:
    """The tracer of one peer: :meth:`start` makes :func:`span` record, :meth:`shutdown` sends what is left."""

    def __init__(self, cfg: TracingConfig, *, peer_id: str = "", peername: str = "") -> None:
        self.cfg = cfg
        self.peer_id = peer_id
        self.peername = peername
        self.agent = agent_address(cfg.jaeger_agent_endpoint)
        self._provider: Any = None

    def start(self) -> None:
        global _tracer, _current_span, _propagator, _server_kind
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace import SpanKind, get_current_span
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError as exc:
            raise _missing(exc) from None
        from pincluster import __version__

        attrs: dict[str, Any] = {"service.name": self.cfg.service_name, "service.version": __version__}
        if self.peer_id:
            attrs["peer.id"] = self.peer_id
        if self.peername:
            attrs["peer.name"] = self.peername
        provider = TracerProvider(resource=Resource.create(attrs),
                                  sampler=ParentBased(TraceIdRatioBased(self.cfg.sampling_prob)))
        exporter, where = self._exporter()
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=_EXPORT_EVERY_MS))
        self._provider = provider
        _current_span = get_current_span
        _propagator = TraceContextTextMapPropagator()
        _server_kind = SpanKind.SERVER
        _tracer = provider.get_tracer("pincluster", __version__)
        log.info("tracing: spans of %s sampled at %g, sent to %s", self.cfg.service_name, self.cfg.sampling_prob,
                 where)

    def _exporter(self) -> tuple[Any, str]:
        """The span exporter: OTLP/HTTP to ``otlp_endpoint`` when set, else jaeger.thrift to the agent."""
        if self.cfg.otlp_endpoint:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError as exc:
                raise _missing(exc) from None
            url = self.cfg.otlp_endpoint
            return OTLPSpanExporter(endpoint=url), f"the OTLP collector at {url}"
        try:
            from opentelemetry.exporter.jaeger.thrift import JaegerExporter
        except ImportError as exc:
            raise _missing(exc) from None
        host, port = self.agent
        with warnings.catch_warnings():  # "use OTLP": Go's jaeger_agent_endpoint is this protocol, so we do not
            warnings.simplefilter("ignore", DeprecationWarning)
            exporter = JaegerExporter(agent_host_name=host, agent_port=port, udp_split_oversized_batches=True)
        return exporter, f"the Jaeger agent at {host}:{port}"

    def shutdown(self) -> None:
        """Stop recording and send the spans not sent yet."""
        global _tracer
        _tracer = None
        provider, self._provider = self._provider, None
        if provider is not None:
            provider.shutdown()
