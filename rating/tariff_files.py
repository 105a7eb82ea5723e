"""Reading tariff files: which format a file holds (amiflow form or OpenEI URDB JSON), and its tariff versions.

``.toml`` files are amiflow's form; ``.json`` files are amiflow's form (one tariff or ``{"tariffs": [...]}``), a URDB
rate item or a URDB API response (rating.urdb converts those). Numbers are read as exact decimals.
"""

from __future__ import annotations

import json
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from amiflow.errors import RatingError
from rating.tariff import TariffSpec
from rating.urdb import is_urdb, urdb_to_specs

__all__ = ["load_tariff", "tariff_from_data"]


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'tariff'}: {e['msg']}" for e in exc.errors()[:5])


def tariff_from_data(data: Any, *, where: str = "tariff") -> list[TariffSpec]:
    """Parsed JSON/TOML (amiflow form, a URDB rate item, or a URDB API response) -> tariff versions."""
    if is_urdb(data):
        return urdb_to_specs(data, where=where)
    items = data.get("tariffs") if isinstance(data, dict) and "tariffs" in data else [data]
    if not isinstance(items, list):
        raise RatingError(f"{where}: 'tariffs' must be a list")
    try:
        return [TariffSpec.model_validate(item) for item in items]
    except ValidationError as exc:
        raise RatingError(f"{where}: {_errors(exc)}") from None


def load_tariff(path: Path | str) -> list[TariffSpec]:
    """Read a tariff file (``.json`` or ``.toml``; amiflow form or OpenEI URDB JSON) -> its versions."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RatingError(f"{path}: cannot read tariff file ({exc.strerror})") from None
    try:
        data = (
            tomllib.loads(raw.decode(), parse_float=Decimal)
            if path.suffix.lower() == ".toml"
            else json.loads(raw, parse_float=Decimal)
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise RatingError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {exc}") from None
    return tariff_from_data(data, where=str(path))
