"""The HTTP API of ``amiflow serve`` (FastAPI): health, Prometheus metrics, meters, readings, bills, accounts.

Read endpoints use the stable contract views (CONTRACT.md) so they survive migrations. The inbound billing API
(payments, balances) is mounted from :mod:`billing_bridge.api`.

The read routes (``/meters``, ``/meters/{meter}``, ``/meters/{meter}/readings``, ``/bills``, ``/accounts/{account}``)
take the credentials of :mod:`billing_bridge.api_auth`: ``Authorization: Bearer <AMIFLOW_API_TOKEN>``, a stored API
key (``amiflow api-keys create``) of the operator, billing or metrics role, a customer's for its own account
(``/accounts/{account}``, ``/bills?account=``), or a signed request: 401 without, 403 for a role or account the
route does not admit, 503 when nothing is configured, open only with ``AMIFLOW_API_PUBLIC_READS``. ``/health`` stays
open for load balancers; ``/metrics`` too unless ``AMIFLOW_API_METRICS_AUTH`` (then an operator or metrics key).
Every request body is limited to ``AMIFLOW_API_MAX_BODY_BYTES`` (413).

``/metrics`` adds the outbox from the database (``amiflow_outbox_pending``, ``amiflow_outbox_rejected``,
``amiflow_outbox_oldest_pending_age_seconds``) to the components' own counters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import BaseModel, Field

from amiflow import __version__
from amiflow.db import Database
from amiflow.settings import Settings
from amiflow_app.api_plans import create_plans_router
from amiflow_app.api_usage import create_usage_router
from amiflow_app.dashboard import create_dashboard_router
from billing_bridge.api import BodyLimit, authenticator, create_router
from billing_bridge.api_auth import Scope, document_guards
from billing_bridge.api_keys import Principal, find_key, has_active_key

__all__ = ["create_app"]

log = logging.getLogger(__name__)


class Health(BaseModel):
    status: str = Field(description="ok, or degraded when a component reports a problem")
    database: bool
    components: dict[str, str]
    version: str
    notes: dict[str, str] = Field(
        default_factory=dict,
        description="warnings that do not degrade the service, by "
        "component (e.g. TimescaleDB jobs that amiflow runs because the extension fails to)",
    )


class Meter(BaseModel):
    meter: str
    protocol: str
    uri: str | None
    timezone: str
    tariff: str | None
    account: str | None
    status: str
    state: str
    last_seen_at: datetime | None


class Reading(BaseModel):
    ts: datetime
    value: float
    unit: str
    quality: list[str]
    source: str


class Bill(BaseModel):
    bill_id: str
    version: int
    account: str | None
    meter: str | None
    period_start: Any
    period_end: Any
    total: str
    currency: str
    estimated_share: float | None
    status: str | None


class AccountStatus(BaseModel):
    account: str
    meters: list[str]
    bills: int
    billed_total: str
    latest_bill: Bill | None


MetricsSource = Callable[[], str]
#: text PostgreSQL can hold: a NUL character in a name is refused by validation (422), never sent to the database
NO_NUL = r"^[^\x00]*$"
PathText = Annotated[str, Path(pattern=NO_NUL)]
QueryText = Annotated[str | None, Query(pattern=NO_NUL)]


def _has_relation(conn: psycopg.Connection[Any], name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone() == (True,)


def _gauge(name: str, help_text: str, value: float) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} gauge\n{name} {value:g}\n"


def outbox_metrics(pool: ConnectionPool[Any]) -> str:
    """The outbox's pending and rejected items and the age of the oldest pending one (empty while the database is
    away: ``amiflow_component_up`` and /health say that)."""
    try:
        with pool.connection(timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'rejected'),"
                " coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'pending')), 0)"
                " FROM amiflow.outbox WHERE state IN ('pending', 'rejected')"
            ).fetchone()
    except (psycopg.Error, PoolTimeout) as exc:
        log.debug("outbox metrics unavailable: %s", exc)
        return ""
    pending, rejected, age = row if row is not None else (0, 0, 0)
    return (
        _gauge("amiflow_outbox_pending", "outbox items waiting for delivery", pending)
        + _gauge("amiflow_outbox_rejected", "outbox items the billing system rejected (kept for an operator)", rejected)
        + _gauge("amiflow_outbox_oldest_pending_age_seconds", "age of the oldest pending outbox item", float(age))
    )


def _with_pool(pool: ConnectionPool[Any], fn: Callable[[psycopg.Connection[Any]], bool]) -> bool:
    with pool.connection(timeout=2) as conn:
        return fn(conn)


def _key_lookup(pool: ConnectionPool[Any]) -> Callable[[str], Principal | None]:
    def lookup(key: str) -> Principal | None:
        with pool.connection() as conn:
            return find_key(conn, key)

    return lookup


def create_app(
    pool: ConnectionPool[Any],
    *,
    metrics: dict[str, MetricsSource] | None = None,
    component_health: Callable[[], dict[str, str]] | None = None,
    component_notes: Callable[[], dict[str, str]] | None = None,
    settings: Settings | None = None,
    database: Database | None = None,
) -> FastAPI:
    """Build the app on a pool of autocommit connections. ``metrics`` are Prometheus text sources by component.

    ``settings`` give the credentials and limits (without them: the defaults, so the read routes answer 503); with
    ``database`` too, the inbound billing API is mounted.
    """
    config = settings if settings is not None else Settings.model_construct()
    app = FastAPI(title="amiflow", version=__version__, description="AMI head-end and metering service")
    app.add_middleware(BodyLimit, max_bytes=config.api_max_body_bytes)
    app.state.amiflow_key_lookup = _key_lookup(pool)
    app.state.amiflow_keys_exist = lambda: _with_pool(pool, has_active_key)

    @app.exception_handler(psycopg.DataError)
    async def _unstorable(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # a parameter PostgreSQL cannot even compare (a NUL character, an out-of-range number): the request's fault
        log.info("%s %s: %s", request.method, request.url.path, str(exc).strip().splitlines()[0])
        msg = "a parameter holds a value the database cannot take (e.g. a NUL character)"
        detail = [{"loc": ["request"], "msg": msg, "type": "value_error"}]  # the shape of FastAPI's own 422
        return JSONResponse(status_code=422, content={"detail": detail})

    started = time.time()
    sources: dict[str, MetricsSource] = {**(metrics or {}), "outbox": lambda: outbox_metrics(pool)}
    reads = [Depends(authenticator(config, read=True))]
    scrape = [Depends(authenticator(config, scope=Scope.METRICS))] if config.api_metrics_auth else []
    guarded: dict[int | str, dict[str, Any]] = {
        401: {"description": "missing or wrong credentials"},
        403: {"description": "a role this route does not admit, or a customer's credentials of another account"},
        503: {"description": "no credentials configured (AMIFLOW_API_TOKEN) and reads not public"},
    }

    @app.get(
        "/health",
        response_model=Health,
        tags=["operations"],
        responses={503: {"model": Health, "description": "degraded: the database or a component has a problem"}},
    )
    def health(response: Response) -> Health:
        try:
            with pool.connection(timeout=2) as conn:
                conn.execute("SELECT 1")
            db_ok = True
        except Exception:  # the health probe reports any failure as "database down"
            db_ok = False
        components = component_health() if component_health else {}
        ok = db_ok and all(v == "ok" for v in components.values())
        if not ok:
            response.status_code = 503  # load balancers and orchestrators act on the status, not the body
        notes = component_notes() if component_notes else {}
        return Health(status="ok" if ok else "degraded", database=db_ok, components=components, version=__version__,
                      notes=notes)  # fmt: skip

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["operations"],
        dependencies=scrape,
        responses=guarded if scrape else None,
    )
    def prometheus() -> str:
        lines = [
            "# HELP amiflow_uptime_seconds Seconds since the service started.",
            "# TYPE amiflow_uptime_seconds gauge",
            f"amiflow_uptime_seconds {time.time() - started:.0f}",
        ]
        for name, source in sources.items():
            try:
                lines.append(source().rstrip("\n"))
            except Exception:  # one broken source must not hide the others
                log.exception("metrics source %s failed", name)
        return "\n".join(lines) + "\n"

    @app.get("/meters", response_model=list[Meter], tags=["meters"], dependencies=reads, responses=guarded)
    def meters(
        protocol: QueryText = None,
        limit: int = Query(1000, ge=1, le=100_000),
        offset: int = Query(0, ge=0, le=1_000_000_000),
    ) -> list[Meter]:
        with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT name AS meter, protocol, uri, timezone, tariff, account, status, state, last_seen_at"
                " FROM amiflow.meters WHERE (%(p)s::text IS NULL OR protocol = %(p)s) ORDER BY name"
                " LIMIT %(l)s OFFSET %(o)s",
                {"p": protocol, "l": limit, "o": offset},
            ).fetchall()
        return [Meter(**r) for r in rows]

    @app.get(
        "/meters/{meter}",
        response_model=Meter,
        tags=["meters"],
        dependencies=reads,
        responses={**guarded, 404: {"description": "unknown"}},
    )
    def meter(meter: PathText) -> Meter:
        with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT name AS meter, protocol, uri, timezone, tariff, account, status, state, last_seen_at"
                " FROM amiflow.meters WHERE name = %s",
                (meter,),
            ).fetchone()
        if row is None:
            raise HTTPException(404, f"meter {meter} is not registered")
        return Meter(**row)

    @app.get(
        "/meters/{meter}/readings",
        response_model=list[Reading],
        tags=["meters"],
        dependencies=reads,
        responses={**guarded, 404: {"description": "unknown meter"}, 422: {"description": "bad range"}},
    )
    def readings(
        meter: PathText,
        start: datetime,
        end: datetime,
        obis: Annotated[str, Query(pattern=NO_NUL)] = "1-0:1.29.0",
        limit: int = Query(10_000, ge=1, le=100_000),
    ) -> list[Reading]:
        if start.tzinfo is None or end.tzinfo is None:
            raise HTTPException(422, "start and end need a UTC offset, e.g. 2026-11-01T00:00:00Z")
        if end <= start:
            raise HTTPException(422, "end must be after start")
        with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            if cur.execute("SELECT 1 FROM amiflow.meters WHERE name = %s", (meter,)).fetchone() is None:
                raise HTTPException(404, f"meter {meter} is not registered")
            rows = cur.execute(
                "SELECT ts, value, unit, quality, source FROM amiflow.v_readings"
                " WHERE meter = %s AND obis = %s AND ts > %s AND ts <= %s ORDER BY ts LIMIT %s",
                (meter, obis, start, end, limit),
            ).fetchall()
        return [Reading(**r) for r in rows]

    def _bills(where: str, params: tuple[Any, ...], limit: int) -> list[Bill]:
        with pool.connection() as conn:
            if not _has_relation(conn, "amiflow.v_bills"):
                return []
            with conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(
                    "SELECT bill_id, version, account, meter, period_start, period_end, total::text AS total,"
                    f" currency, estimated_share, status FROM amiflow.v_bills {where}"
                    " ORDER BY period_start DESC, bill_id, version DESC LIMIT %s",
                    (*params, limit),
                ).fetchall()
        return [Bill(**r) for r in rows]

    @app.get("/bills", response_model=list[Bill], tags=["billing"], dependencies=reads, responses=guarded)
    def bills(account: QueryText = None, limit: int = Query(100, ge=1, le=10_000)) -> list[Bill]:
        if account is None:
            return _bills("", (), limit)
        return _bills("WHERE account = %s", (account,), limit)

    @app.get(
        "/accounts/{account}",
        response_model=AccountStatus,
        tags=["billing"],
        dependencies=reads,
        responses={**guarded, 404: {"description": "unknown account"}},
    )
    def account_status(account: PathText) -> AccountStatus:
        with pool.connection() as conn:
            meter_rows = conn.execute(
                "SELECT name FROM amiflow.meters WHERE account = %s ORDER BY name", (account,)
            ).fetchall()
        account_bills = _bills("WHERE account = %s", (account,), 10_000)
        if not meter_rows and not account_bills:
            raise HTTPException(404, f"account {account} is unknown")
        from decimal import Decimal

        total = sum((Decimal(b.total) for b in account_bills), Decimal(0))
        return AccountStatus(
            account=account,
            meters=[r[0] for r in meter_rows],
            bills=len(account_bills),
            billed_total=str(total),
            latest_bill=account_bills[0] if account_bills else None,
        )

    if settings is not None and database is not None:
        app.include_router(create_router(settings, lambda: database))
    app.include_router(create_usage_router(config, pool))  # customers' usage: Green Button and insights
    app.include_router(create_plans_router(config, pool))  # installment plans (collections)
    app.include_router(create_dashboard_router(config, pool))  # the live operations dashboard (/dashboard)
    document_guards(app)  # every guarded route's spec names 401, 403 and 503
    return app
