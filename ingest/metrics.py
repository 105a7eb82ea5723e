"""Ingest metrics in the Prometheus text format, and a tiny stdlib HTTP server for ``/health`` and ``/metrics``.

``amiflow serve`` can mount the same handler: :func:`render_metrics` and :meth:`IngestMetrics.health` are all
it needs.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from amiflow.errors import ConfigError

__all__ = ["IngestMetrics", "MetricsServer", "make_handler", "render_metrics"]

_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class IngestMetrics:
    """Counters and gauges of one ingest worker; thread-safe (a lock around plain ints)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages_received = 0
        self.readings_received = 0
        self.readings_stored = 0
        self.readings_duplicate = 0
        self.readings_conflict = 0
        self.events_stored = 0
        self.batches_committed = 0
        self.messages_spooled = 0
        self.messages_replayed = 0
        self.messages_acked = 0
        self.quarantined_messages: dict[str, int] = {}
        self.quarantined_readings: dict[str, int] = {}
        self.flagged_readings: dict[str, int] = {}
        self.spool_bytes = 0
        self.spool_full = False
        self.mqtt_connected = False
        self.db_available = True
        self.queue_depth = 0
        self.inflight = 0
        self.last_commit_at = 0.0
        self._lag_counts = [0] * (len(_BUCKETS_S) + 1)
        self._lag_sum = 0.0
        self._lag_n = 0
        self._lag_recent: deque[float] = deque(maxlen=100_000)

    def add(self, **counts: int) -> None:
        """Add to counters by attribute name, for example ``add(readings_stored=96)``."""
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def count_reason(self, table: str, reason: str, n: int = 1) -> None:
        """Add ``n`` under ``reason`` to the table ``quarantined_messages``, ``quarantined_readings`` or
        ``flagged_readings``."""
        with self._lock:
            d: dict[str, int] = getattr(self, table)
            d[reason] = d.get(reason, 0) + n

    def observe_lag(self, lags_s: list[float]) -> None:
        """End-to-end lag (broker receive to commit) of committed messages, into a histogram."""
        with self._lock:
            for lag in lags_s:
                i = 0
                while i < len(_BUCKETS_S) and lag > _BUCKETS_S[i]:
                    i += 1
                self._lag_counts[i] += 1
                self._lag_sum += lag
            self._lag_n += len(lags_s)
            self._lag_recent.extend(lags_s)

    def lag_percentiles(self, *qs: float) -> list[float]:
        """Percentiles (0..100) of the last 100,000 receive-to-commit lags, in seconds (NaN when none)."""
        with self._lock:
            samples = sorted(self._lag_recent)
        if not samples:
            return [float("nan")] * len(qs)
        return [samples[min(len(samples) - 1, int(q / 100 * len(samples)))] for q in qs]

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details): healthy while connected to the broker and the spool is not full."""
        with self._lock:
            ok = self.mqtt_connected and not self.spool_full
            return ok, {
                "status": "ok" if ok else "degraded",
                "mqtt_connected": self.mqtt_connected,
                "database_available": self.db_available,
                "spool_bytes": self.spool_bytes,
                "spool_full": self.spool_full,
                "queue_depth": self.queue_depth,
                "last_commit_at": self.last_commit_at,
            }

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of every counter (for tests and reports)."""
        with self._lock:
            return {k: (dict(v) if isinstance(v, dict) else v) for k, v in vars(self).items() if not k.startswith("_")}

    def lag_histogram(self) -> tuple[list[tuple[float, int]], float, int]:
        with self._lock:
            cum, out = 0, []
            for bound, c in zip((*_BUCKETS_S, float("inf")), self._lag_counts, strict=True):
                cum += c
                out.append((bound, cum))
            return out, self._lag_sum, self._lag_n


def _line(name: str, value: float, labels: dict[str, str] | None = None) -> str:
    if labels:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        return f"{name}{{{inner}}} {value}"
    return f"{name} {value}"


def render_metrics(m: IngestMetrics) -> str:
    """The Prometheus exposition text (format 0.0.4) of ``m``."""
    s = m.snapshot()
    out: list[str] = []

    def counter(name: str, help_: str, value: float) -> None:
        out.extend((f"# HELP {name} {help_}", f"# TYPE {name} counter", _line(name, value)))

    def gauge(name: str, help_: str, value: float) -> None:
        out.extend((f"# HELP {name} {help_}", f"# TYPE {name} gauge", _line(name, value)))

    counter("amiflow_ingest_messages_received_total", "MQTT messages received", s["messages_received"])
    counter("amiflow_ingest_readings_received_total", "readings decoded from messages", s["readings_received"])
    counter("amiflow_ingest_readings_stored_total", "readings newly stored", s["readings_stored"])
    counter("amiflow_ingest_readings_duplicate_total", "readings already stored", s["readings_duplicate"])
    counter("amiflow_ingest_readings_conflict_total", "readings clashing with a stored value", s["readings_conflict"])
    counter("amiflow_ingest_events_stored_total", "meter events stored", s["events_stored"])
    counter("amiflow_ingest_batches_committed_total", "database transactions committed", s["batches_committed"])
    counter("amiflow_ingest_messages_spooled_total", "messages written to the local spool", s["messages_spooled"])
    counter("amiflow_ingest_messages_replayed_total", "spooled messages replayed", s["messages_replayed"])
    counter("amiflow_ingest_messages_acked_total", "messages acknowledged to the broker", s["messages_acked"])
    for table, name, help_ in (
        ("quarantined_messages", "amiflow_ingest_quarantined_messages_total", "messages quarantined, by reason"),
        ("quarantined_readings", "amiflow_ingest_quarantined_readings_total", "readings quarantined, by reason"),
        ("flagged_readings", "amiflow_ingest_flagged_readings_total", "readings stored with a flag, by reason"),
    ):
        out.extend((f"# HELP {name} {help_}", f"# TYPE {name} counter"))
        out.extend(_line(name, v, {"reason": r}) for r, v in sorted(s[table].items()))
    gauge("amiflow_ingest_spool_bytes", "bytes in the local spool awaiting replay", s["spool_bytes"])
    gauge("amiflow_ingest_spool_full", "1 when the spool is full and acknowledgements stop", int(s["spool_full"]))
    gauge("amiflow_ingest_mqtt_connected", "1 while connected to the broker", int(s["mqtt_connected"]))
    gauge("amiflow_ingest_database_available", "1 while the database accepts writes", int(s["db_available"]))
    gauge("amiflow_ingest_queue_depth", "messages received, not yet committed", s["queue_depth"])
    buckets, total, n = m.lag_histogram()
    name = "amiflow_ingest_lag_seconds"
    out.extend((f"# HELP {name} receive-to-commit lag of messages", f"# TYPE {name} histogram"))
    out.extend(_line(f"{name}_bucket", c, {"le": "+Inf" if b == float("inf") else repr(b)}) for b, c in buckets)
    out.extend((_line(f"{name}_sum", total), _line(f"{name}_count", n)))
    return "\n".join(out) + "\n"


def make_handler(metrics: IngestMetrics, *, extra: Callable[[], str] | None = None) -> type[BaseHTTPRequestHandler]:
    """A request handler class serving ``/health`` (JSON, 200 or 503) and ``/metrics`` (Prometheus text)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body = (render_metrics(metrics) + (extra() if extra else "")).encode()
                self._send(200, "text/plain; version=0.0.4; charset=utf-8", body)
            elif path == "/health":
                ok, details = metrics.health()
                self._send(200 if ok else 503, "application/json", json.dumps(details).encode())
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


class MetricsServer:
    """``/health`` and ``/metrics`` on (host, port) in a daemon thread; port 0 picks a free port."""

    def __init__(self, metrics: IngestMetrics, host: str = "127.0.0.1", port: int = 8080) -> None:
        self._metrics = metrics
        self._addr = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._addr[1]

    def start(self) -> None:
        """Listen and serve in a daemon thread; ConfigError when the address cannot be bound."""
        try:
            self._server = ThreadingHTTPServer(self._addr, make_handler(self._metrics))
        except OSError as exc:
            raise ConfigError(
                f"AMIFLOW_HTTP_HOST/AMIFLOW_HTTP_PORT {self._addr[0]}:{self._addr[1]}: cannot listen ({exc});"
                " choose a free port or 0"
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ingest-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
