"""amiflow rating: tariffs (own form and OpenEI URDB), the vectorized rating engine and bill JSON.

Typical use for a block of meters on one tariff and one time zone::

    spec = select_version(load_tariff("tariff.toml"), period_start, period_end)
    tariff = compile_tariff(spec)                     # once per tariff version
    block = rate_block(tariff, ts, import_wh, export_wh, tz=tz, period_start=..., period_end=...)
    bills = bills_json(block, meter_names)            # CONTRACT.md bill JSON, money as decimal strings

A tariff change inside a period: ``tariff_parts(versions, start, end)`` -> ``rate_parts(...)`` ->
``split_bill_json(blocks, i, meter=...)`` (one part = exactly the above).

These names are pure (no database). The database side is imported by module: rating.tariff_store (the tariffs
table), rating.service_store (move-in / move-out) and rating.billing_run (VEE and billing runs of a month); VEE
itself is rating.vee. See docs/rating.md.
"""

from rating.bill import bill_json, bills_json, default_bill_id
from rating.compile import CompiledTariff, compile_tariff
from rating.engine import RatedBlock, rate_block, rate_part
from rating.lines import LineSpec
from rating.local_time import local_midnight_ts
from rating.offline import Usage, rate_usage, read_usage_csv
from rating.tariff import TariffSpec, select_version
from rating.tariff_change import TariffPart, rate_parts, split_bill_json, tariff_parts
from rating.tariff_files import load_tariff, tariff_from_data
from rating.time_axis import TimeAxis, build_axis

__all__ = [
    "CompiledTariff",
    "LineSpec",
    "RatedBlock",
    "TariffPart",
    "TariffSpec",
    "TimeAxis",
    "Usage",
    "bill_json",
    "bills_json",
    "build_axis",
    "compile_tariff",
    "default_bill_id",
    "load_tariff",
    "local_midnight_ts",
    "rate_block",
    "rate_part",
    "rate_parts",
    "rate_usage",
    "read_usage_csv",
    "select_version",
    "split_bill_json",
    "tariff_from_data",
    "tariff_parts",
]
