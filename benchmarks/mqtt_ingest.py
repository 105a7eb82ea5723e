"""MQTT ingest end to end: publisher -> broker -> one worker -> PostgreSQL, against baselines of the same run.

  python benchmarks/mqtt_ingest.py [--quick] [--mqtt-url mqtt://127.0.0.1:1883]

Phases, each on its own meters in one scratch database (AMIFLOW_BENCH_DATABASE_URL / AMIFLOW_TEST_DATABASE_URL, or
the embedded server):

1. ``writer``: BatchWriter.write of day-shaped batches straight into the database (the baseline rate).
2. ``day``: messages carrying a day of 15-minute intervals (96 readings) through the broker and one IngestWorker.
3. ``few``: messages carrying 4 readings each.
4. ``paho``: a bare paho-mqtt QoS 1 subscriber (auto-ack, no decoding, no database): the raw subscribe rate.
5. ``one``: one reading per message through the worker (ARCHITECTURE.md: target >= 0.8x the raw rate).

The publisher runs in a separate process and is flow-controlled by credits (published - acknowledged <= 1000) so
that a default Mosquitto (max_queued_messages 1000) never drops a message: every phase checks that all readings
arrived. Latencies are the worker's receive-to-commit lags (p50/p99 over the day and few phases). Ends with a
``RESULT mqtt_ingest ...`` line.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amiflow.db.writer import BatchWriter
from amiflow.settings import load_settings
from amiflow.types import ReadingBatch
from amiflow.uri import parse_mqtt_url
from benchmarks._db import scratch_database
from ingest.mqtt_worker import IngestWorker

WINDOW = 1000
DAY_S = 86400


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _publisher(url: str, prefix: str, plan: tuple[str, int, int, int], credit: Any, done: Any) -> None:
    """Publish the plan (kind, meters, messages per meter, readings per message), waiting for credit."""
    kind, meters, per_meter, per_msg = plan
    target = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(WINDOW)
    client.connect(target.host, target.port, keepalive=60)
    client.loop_start()
    start = (int(time.time()) // 900) * 900 - 20 * DAY_S
    stamps = [_iso(start + 900 * k) for k in range(per_meter * per_msg + 1)]
    out: list[tuple[str, bytes]] = []
    for k in range(per_meter):  # built before the clock starts (the clock starts at the first delivery)
        for i in range(meters):
            meter = f"{kind}{i:05d}"
            body = ",".join(
                f'{{"obis":"1-0:1.29.0","ts":"{stamps[k * per_msg + j + 1]}","value":{0.1 + (j % 9) * 0.01:.2f},'
                f'"unit":"kWh"}}'
                for j in range(per_msg)
            )
            out.append((f"{prefix}/{meter}/readings", f'{{"meter":"{meter}","seq":{k},"readings":[{body}]}}'.encode()))
    n = 0
    for topic, payload in out:
        if n - credit.value >= WINDOW:
            while n - credit.value >= WINDOW:
                time.sleep(0.0005)
        client.publish(topic, payload, qos=1)
        n += 1
    done.value = n
    time.sleep(1.0)
    client.disconnect()
    client.loop_stop()


def _register(url: str, kind: str, meters: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO amiflow.meters (name, protocol) SELECT %s || lpad(g::text, 5, '0'), 'mqtt'"
            " FROM generate_series(0, %s - 1) g",
            (kind, meters),
        )


def writer_rate(url: str, readings: int) -> float:
    meters = max(1, readings // (96 * 5))
    _register(url, "W", meters)
    start = (int(time.time()) // 900) * 900 - 30 * DAY_S
    names = np.array([f"W{i:05d}" for i in range(meters)], dtype=object)
    ts = start + 900 * np.arange(1, 96 * 5 + 1, dtype=np.int64)
    full = ReadingBatch.from_columns(
        np.repeat(names, len(ts)), "1-0:1.29.0", np.tile(ts, meters), np.full(meters * len(ts), 123.0), unit="Wh"
    )
    step = 50_000
    with psycopg.connect(url, autocommit=True) as conn:
        w = BatchWriter(conn)
        t0 = time.perf_counter()
        for a in range(0, len(full), step):
            w.write(full.take(slice(a, a + step)))
        return len(full) / (time.perf_counter() - t0)


def through_worker(url: str, mqtt_url: str, kind: str, meters: int, per_meter: int, per_msg: int) -> dict[str, float]:
    _register(url, kind, meters)
    prefix = f"bench/{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="amiflow-bench-spool-") as tmp:
        settings = load_settings(
            mqtt_url=mqtt_url,
            data_dir=Path(tmp),
            mqtt_client_id=f"bench-{tag}",
            mqtt_share_group=f"bench{tag}",
            mqtt_session_expiry_s=60,
        )
        worker = IngestWorker(settings, url, prefix=prefix)
        worker.start()
        credit, done = mp.Value("q", 0), mp.Value("q", -1)
        proc = mp.Process(target=_publisher, args=(mqtt_url, prefix, (kind, meters, per_meter, per_msg), credit, done))
        expected = meters * per_meter * per_msg
        proc.start()
        t0 = None
        try:
            while worker.metrics.readings_stored < expected:
                credit.value = worker.metrics.messages_acked
                if t0 is None and worker.metrics.messages_received:
                    t0 = time.perf_counter()
                if not proc.is_alive() and done.value >= 0 and time.perf_counter() - (t0 or 0) > 600:
                    break
                time.sleep(0.002)
            elapsed = time.perf_counter() - (t0 or time.perf_counter())
        finally:
            credit.value = 1 << 60
            proc.join(30)
            worker.stop()
    m = worker.metrics.snapshot()
    if m["readings_stored"] != expected:
        raise SystemExit(f"{kind}: stored {m['readings_stored']} of {expected} readings")
    p50, p99 = worker.metrics.lag_percentiles(50, 99)
    return {
        "readings_per_s": expected / elapsed,
        "msgs_per_s": meters * per_meter / elapsed,
        "p50_ms": p50 * 1e3,
        "p99_ms": p99 * 1e3,
    }


def raw_paho_rate(mqtt_url: str, messages: int) -> float:
    """Messages/s of a bare paho QoS 1 subscriber (auto-ack, payloads untouched)."""
    prefix = f"bench/{uuid.uuid4().hex[:8]}"
    target = parse_mqtt_url(mqtt_url)
    got = [0]
    first: list[float] = []
    finished = threading.Event()

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not first:
            first.append(time.perf_counter())
        got[0] += 1
        if got[0] >= messages:
            finished.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-raw-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.connect(target.host, target.port)
    sub.subscribe(f"{prefix}/+/readings", qos=1)
    sub.loop_start()
    time.sleep(0.3)
    credit, done = mp.Value("q", 0), mp.Value("q", -1)
    meters = 1000
    proc = mp.Process(target=_publisher, args=(mqtt_url, prefix, ("R", meters, messages // meters, 1), credit, done))
    proc.start()
    while not finished.wait(0.002):
        credit.value = got[0]
        if not proc.is_alive() and got[0] < messages and done.value >= 0:
            time.sleep(2)
            break
    elapsed = time.perf_counter() - first[0]
    credit.value = 1 << 60
    proc.join(30)
    sub.disconnect()
    sub.loop_stop()
    if got[0] < messages:
        raise SystemExit(f"raw paho: received {got[0]} of {messages}")
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs (under a minute)")
    parser.add_argument("--mqtt-url", default=os.environ.get("AMIFLOW_TEST_MQTT_URL", "mqtt://127.0.0.1:1883"))
    args = parser.parse_args()
    scale = 1 if args.quick else 5
    with scratch_database("amiflow_bench_mqtt") as url:
        day = through_worker(url, args.mqtt_url, "D", 200 * scale, 5, 96)
        writer = writer_rate(url, 200 * scale * 5 * 96)
        few = through_worker(url, args.mqtt_url, "F", 2000, 10 * scale, 4)
        raw = raw_paho_rate(args.mqtt_url, 20_000 * scale)
        one = through_worker(url, args.mqtt_url, "O", 2000, 10 * scale, 1)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for name, r in (("day", day), ("few", few), ("one", one)):
        print(
            f"{name:>4}: {r['readings_per_s']:>10,.0f} readings/s {r['msgs_per_s']:>8,.0f} msgs/s"
            f"  p50 {r['p50_ms']:.0f} ms  p99 {r['p99_ms']:.0f} ms"
        )
    print(f"writer: {writer:,.0f} rows/s   raw paho subscribe: {raw:,.0f} msgs/s   peak RSS {rss_mb:.0f} MB")
    p50 = float(np.nanmax([day["p50_ms"], few["p50_ms"]]))
    p99 = float(np.nanmax([day["p99_ms"], few["p99_ms"]]))
    print(
        f"RESULT mqtt_ingest day_msgs_readings_per_s={day['readings_per_s']:.0f}"
        f" few_msgs_readings_per_s={few['readings_per_s']:.0f} writer_rows_per_s={writer:.0f}"
        f" day_vs_writer={day['readings_per_s'] / writer:.2f} few_vs_writer={few['readings_per_s'] / writer:.2f}"
        f" one_msgs_per_s={one['msgs_per_s']:.0f} raw_paho_msgs_per_s={raw:.0f}"
        f" one_vs_paho={one['msgs_per_s'] / raw:.2f} p50_ms={p50:.0f} p99_ms={p99:.0f} peak_rss_mb={rss_mb:.0f}"
    )


if __name__ == "__main__":
    main()
