"""OpenTelemetry traces: run → round → agent action → LLM call, with the GenAI semantic conventions.

On only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and
the `otel` extra is installed (`uv sync --extra otel`). Spans go over OTLP/HTTP (protobuf) in a
batch; the exporter reads the standard OTEL_* variables (headers, timeout, service name).
Off, `tracer()` is a cached None after one environment lookup, and every helper here returns at
its first line: no import of opentelemetry, no span object, nothing allocated.

Parenting is explicit (the runtime keeps the current run/round/action span in its own context
variables, see core/runtime/observe.py), so AgentDeck's spans never depend on, or disturb, a
global OpenTelemetry context another library may have set.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)

_UNSET: Any = object()
_tracer: Any = _UNSET
_provider: Any = None
_lock = threading.Lock()


def endpoint_configured() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def tracer() -> Any:
    """The AgentDeck tracer, or None when tracing is off (decided once per process)."""
    global _tracer, _provider
    if _tracer is not _UNSET:
        return _tracer
    with _lock:
        if _tracer is not _UNSET:
            return _tracer
        if not endpoint_configured():
            _tracer = None
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
                "run `uv sync --extra otel` to export traces"
            )
            _tracer = None
            return None
        from core.metrics import PROCESS
        from core.version import VERSION

        resource = Resource.create(
            {
                "service.name": os.environ.get("OTEL_SERVICE_NAME", "agentdeck"),
                "service.version": VERSION,
                "service.instance.id": PROCESS,
            }
        )
        _provider = TracerProvider(resource=resource)
        _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        _tracer = _provider.get_tracer("agentdeck", VERSION)
        log.info("OpenTelemetry: exporting traces over OTLP/HTTP")
        return _tracer


def start_span(name: str, parent: Any = None, attributes: dict[str, Any] | None = None, client: bool = False) -> Any:
    """A started span (child of `parent` when given, else a root), or None when tracing is off."""
    t = tracer()
    if t is None:
        return None
    from opentelemetry import trace

    context = trace.set_span_in_context(parent) if parent is not None else None
    kind = trace.SpanKind.CLIENT if client else trace.SpanKind.INTERNAL
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    return t.start_span(name, context=context, kind=kind, attributes=attrs)


def set_attributes(span: Any, attributes: dict[str, Any]) -> None:
    if span is None:
        return
    span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def end_span(span: Any, error: BaseException | str | None = None) -> None:
    """End `span`; with `error`, mark it failed (status ERROR and `error.type`)."""
    if span is None:
        return
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        error_type = type(error).__name__ if isinstance(error, BaseException) else str(error)
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
    span.end()


def flush(timeout_millis: int = 10_000) -> bool:
    """Send what is batched now (tests, shutdown)."""
    if _provider is None:
        return True
    return bool(_provider.force_flush(timeout_millis))


def reset() -> None:
    """Flush and forget the provider, so the next `tracer()` reads the environment again."""
    global _tracer, _provider
    with _lock:
        if _provider is not None:
            _provider.shutdown()
        _tracer, _provider = _UNSET, None
