"""The tariffs table (``amiflow.tariffs``): store a tariff version, read the versions of a tariff, list them all.

Versions are immutable: storing the same version again with the same content is a no-op, with different content an
error (a change gets a new version number).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg.types.json import Jsonb

from amiflow.errors import RatingError
from rating.tariff import TariffSpec

__all__ = ["StoredTariff", "list_tariffs", "store_tariff", "tariff_versions"]


@dataclass(frozen=True, slots=True)
class StoredTariff:
    """One row of the tariff listing."""

    id: str
    version: int
    effective_from: date
    effective_to: date | None
    source: str
    name: str


def store_tariff(conn: Any, spec: TariffSpec) -> str:
    """Insert one version into amiflow.tariffs: 'imported', 'unchanged', or RatingError if the version differs."""
    body = spec.model_dump(mode="json")
    with conn.transaction():
        row = conn.execute(
            "SELECT body FROM amiflow.tariffs WHERE id = %s AND version = %s FOR UPDATE", (spec.id, spec.version)
        ).fetchone()
        if row is not None:
            if TariffSpec.model_validate(row[0]) == spec:
                return "unchanged"
            raise RatingError(
                f"tariff {spec.id} version {spec.version} already exists with different content; "
                "versions are immutable: give the change a new version number"
            )
        conn.execute(
            "INSERT INTO amiflow.tariffs (id, version, name, effective_from, effective_to, source, source_ref, body)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (spec.id, spec.version, spec.name, spec.effective_from, spec.effective_to, spec.source, spec.source_ref,
             Jsonb(body)),
        )  # fmt: skip
    return "imported"


def tariff_versions(conn: Any, tariff_id: str) -> list[TariffSpec]:
    """All stored versions of ``tariff_id`` (rating.tariff.select_version picks one for a period)."""
    rows = conn.execute("SELECT body FROM amiflow.tariffs WHERE id = %s ORDER BY version", (tariff_id,)).fetchall()
    return [TariffSpec.model_validate(r[0]) for r in rows]


def list_tariffs(conn: Any) -> list[StoredTariff]:
    """Every stored version, by tariff id and version."""
    rows = conn.execute(
        "SELECT id, version, effective_from, effective_to, source, name FROM amiflow.tariffs ORDER BY id, version"
    ).fetchall()
    return [StoredTariff(*r) for r in rows]
