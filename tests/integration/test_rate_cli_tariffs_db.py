"""`amiflow tariffs import|list|show` against a real PostgreSQL (the amiflow.tariffs table of migration 0004)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from amiflow_app.cli import main
from rating.tariff import select_version
from rating.tariff_files import load_tariff
from rating.tariff_store import store_tariff, tariff_versions

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "rating" / "tariffs" / "residential_tou_tiers.toml"
URDB = ROOT / "tests" / "data" / "urdb" / "smud_ci_tod3_2025.json"


def test_import_list_show(
    db_url: str, db_conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMIFLOW_DATABASE_URL", db_url)
    assert main(["tariffs", "import", str(EXAMPLE)]) == 0
    assert main(["tariffs", "import", str(URDB)]) == 0
    assert main(["tariffs", "import", str(EXAMPLE)]) == 0  # same version, same body: unchanged
    out = capsys.readouterr().out
    assert "res-tou-tiers version 1 (amiflow, from 2024-01-01): imported" in out
    assert "68c0ca32d7afaa668b0dc6fb version 1 (urdb, from 2025-05-01): imported" in out
    assert out.rstrip().endswith("unchanged")

    assert main(["tariffs", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["source"]) for r in rows] == [
        ("68c0ca32d7afaa668b0dc6fb", "urdb"),
        ("res-tou-tiers", "amiflow"),
    ]

    assert main(["tariffs", "show", "res-tou-tiers"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["energy"]["rates"]["peak"] == ["0.41234", "0.49234"]  # exact decimals survive jsonb
    stored = db_conn.execute(
        "SELECT source_ref, body->>'currency' FROM amiflow.tariffs WHERE source = 'urdb'"
    ).fetchone()
    assert stored == ("https://apps.openei.org/IURDB/rate/view/68c0ca32d7afaa668b0dc6fb", "USD")

    assert main(["tariffs", "show", "nope"]) != 0
    assert "tariff nope: not found" in capsys.readouterr().err


def test_versions_are_immutable_and_selected_by_date(db_conn: psycopg.Connection[Any]) -> None:
    (v1,) = load_tariff(EXAMPLE)
    assert store_tariff(db_conn, v1) == "imported"
    changed = v1.model_copy(update={"name": "changed"})
    with pytest.raises(Exception, match="versions are immutable"):
        store_tariff(db_conn, changed)
    v2 = v1.model_copy(update={"version": 2, "effective_from": v1.effective_from.replace(year=2025)})
    v1_closed = v1.model_copy(update={"version": 3, "effective_to": v2.effective_from})
    assert store_tariff(db_conn, v2) == "imported" and store_tariff(db_conn, v1_closed) == "imported"
    versions = tariff_versions(db_conn, "res-tou-tiers")
    assert [v.version for v in versions] == [1, 2, 3]
    assert select_version(versions, v2.effective_from, v2.effective_from.replace(month=2)).version == 2
