"""The shipped migrations have distinct versions; two files sharing one is a clear error, not a failed migration."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from amiflow.errors import ConfigError

migrate_module = importlib.import_module("amiflow.db.migrate")  # the package re-exports a function of that name


def test_two_files_with_one_version_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("0001_core.sql", "0002_a.sql", "0002_b.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    monkeypatch.setattr(migrate_module.resources, "files", lambda package: tmp_path)
    with pytest.raises(ConfigError, match=r"two migrations share version 0002 \(0002_[ab]\.sql, 0002_[ab]\.sql\)"):
        migrate_module.migrations()


def test_distinct_versions_load_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("0002_b.sql", "0001_core.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    monkeypatch.setattr(migrate_module.resources, "files", lambda package: tmp_path)
    assert [m.version for m in migrate_module.migrations()] == ["0001", "0002"]
