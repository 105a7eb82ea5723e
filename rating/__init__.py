"""amiflow rating: tariffs (own form and OpenEI URDB), the vectorized rating engine and bill JSON.

Typical use for a block of meters on one tariff and one time zone::

    spec = select_version(load_tariff("tariff.toml"), period_start, period_end)
    tariff = compile_tariff(spec)                     # once per tariff version
    block = rate_block(tariff, ts, import_wh, export_wh, tz=tz, period_start=..., period_end=...)
    bills = bills_json(block, meter_names)            # CONTRACT.md bill JSON, money as decimal strings

See docs/rating.md.
"""

from rating.bill import bill_json, bills_json, default_bill_id
from rating.compile import CompiledTariff, compile_tariff
from rating.engine import LineSpec, RatedBlock, TimeAxis, build_axis, local_midnight_ts, rate_block
from rating.tariff import TariffSpec, load_tariff, select_version, tariff_from_data

__all__ = [
    "CompiledTariff",
    "LineSpec",
    "RatedBlock",
    "TariffSpec",
    "TimeAxis",
    "bill_json",
    "bills_json",
    "build_axis",
    "compile_tariff",
    "default_bill_id",
    "load_tariff",
    "local_midnight_ts",
    "rate_block",
    "select_version",
    "tariff_from_data",
]
