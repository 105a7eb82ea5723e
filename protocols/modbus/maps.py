"""Register maps as data: the Eastron CSVs, the SunSpec model CSVs and amiflow's own map format.

Map names (``?map=`` in a meter URI, ``--map`` on the command line):

``sdm630`` / ``sdm120``   Eastron, from ``maps/eastron_*_registers.csv`` (input registers float32, 80 per request)
``sunspec``               found by walking the SunSpec chain (see :mod:`protocols.modbus.client`); the models come
                          from ``maps/sunspec_model_*.csv``
``breaker``               amiflow's demo contactor: one holding register (relay, see ``maps/amiflow_breaker.csv``)
``a+b``                   the union of two maps (``sdm630+breaker`` is an SDM630 with a contactor)
a ``.csv`` path           a map in the amiflow format (maps/README.md, docs/modbus.md): columns ``address,function_code,
                          name,type`` and optionally ``registers,unit,scale,obis,access,description``; a line
                          ``# word_order=little max_registers=60 even=false max_gap=0`` sets the limits.

OBIS codes: the tables below map the energy, power, voltage, current, frequency and power-factor registers of the
Eastron and SunSpec maps; an ``obis`` column in a CSV overrides or adds to them.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from amiflow.errors import ConfigError
from amiflow.types import normalize_unit
from protocols.modbus.registers import MAX_PDU_REGISTERS, TYPE_WIDTH, Register, RegisterMap

__all__ = [
    "EASTRON_OBIS",
    "MAP_NAMES",
    "SUNSPEC_METER_MODELS",
    "SUNSPEC_OBIS",
    "load_map",
    "read_map_csv",
    "sunspec_model",
]

MAP_NAMES = ("breaker", "sdm120", "sdm630", "sunspec")
SUNSPEC_METER_MODELS = (201, 202, 203, 204, 211, 212, 213, 214)

# register name -> OBIS; the unit conversion comes from the register's unit
EASTRON_OBIS: dict[str, str] = {
    "l1_voltage": "1-0:32.7.0",
    "l2_voltage": "1-0:52.7.0",
    "l3_voltage": "1-0:72.7.0",
    "voltage": "1-0:32.7.0",
    "l1_current": "1-0:31.7.0",
    "l2_current": "1-0:51.7.0",
    "l3_current": "1-0:71.7.0",
    "current": "1-0:31.7.0",
    "l1_power_active": "1-0:21.7.0",
    "l2_power_active": "1-0:41.7.0",
    "l3_power_active": "1-0:61.7.0",
    "total_power_active": "1-0:1.7.0",  # signed on Eastron: negative while exporting
    "power_active": "1-0:1.7.0",
    "total_power_reactive": "1-0:3.7.0",
    "power_reactive": "1-0:3.7.0",
    "total_power_factor": "1-0:13.7.0",
    "power_factor": "1-0:13.7.0",
    "frequency": "1-0:14.7.0",
    "import_energy_active": "1-0:1.8.0",
    "export_energy_active": "1-0:2.8.0",
    "import_energy_reactive": "1-0:3.8.0",
    "export_energy_reactive": "1-0:4.8.0",
}
SUNSPEC_OBIS: dict[str, str] = {
    "AphA": "1-0:31.7.0",
    "AphB": "1-0:51.7.0",
    "AphC": "1-0:71.7.0",
    "PhVphA": "1-0:32.7.0",
    "PhVphB": "1-0:52.7.0",
    "PhVphC": "1-0:72.7.0",
    "W": "1-0:1.7.0",  # signed: negative while exporting
    "WphA": "1-0:21.7.0",
    "WphB": "1-0:41.7.0",
    "WphC": "1-0:61.7.0",
    "VAR": "1-0:3.7.0",
    "Hz": "1-0:14.7.0",
    "TotWhImp": "1-0:1.8.0",
    "TotWhExp": "1-0:2.8.0",
}
_UNIT_FIX = {"VAr": "var", "kVArh": "kvarh", "VArh": "varh"}


def _obis_unit(unit: str) -> tuple[str, float]:
    try:
        return normalize_unit(_UNIT_FIX.get(unit, unit))
    except ValueError:
        return unit, 1.0


def _register(
    row: dict[str, str], obis_table: dict[str, str], *, address: int, name: str, count: int | None = None
) -> Register:
    typ = (row.get("type") or "").strip()
    if typ not in TYPE_WIDTH:
        raise ConfigError(f"register {name}: unknown type {typ!r}; expected one of {', '.join(sorted(TYPE_WIDTH))}")
    width = count or int(row.get("registers") or row.get("size") or TYPE_WIDTH[typ] or 1)
    unit = (row.get("unit") or "").strip()
    obis = (row.get("obis") or "").strip() or obis_table.get(name)
    base, factor = _obis_unit(unit)
    if unit == "Pct":  # SunSpec power factor in percent
        base, factor = "", 0.01
    fc = int(row.get("function_code") or 3)
    access = (row.get("access") or "R").strip().upper()
    return Register(
        name=name,
        address=address,
        function_code=fc,
        type=typ,
        count=width,
        unit=unit,
        scale=float(row.get("scale") or 1) if not (row.get("scale") or "").endswith("_SF") else 1.0,
        scale_ref=(row.get("scale") or "").strip() if (row.get("scale") or "").endswith("_SF") else None,
        obis=obis,
        obis_unit=base,
        obis_factor=factor,
        writable="W" in access,
        description=(row.get("description") or row.get("label") or row.get("desc") or "").strip(),
    )


def read_map_csv(text: str, name: str, *, obis_table: dict[str, str] | None = None) -> RegisterMap:
    """A map in the amiflow/Eastron CSV format (see the module docstring); ConfigError names the bad line."""
    options: dict[str, str] = {}
    lines = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            for item in line.lstrip("# ").split():
                key, _, value = item.partition("=")
                if value:
                    options[key] = value
            continue
        lines.append(line)
    regs = []
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    for n, row in enumerate(reader, start=2):
        if None in row.values():  # csv fills the fields a short row lacks with None
            found = sum(v is not None for v in row.values())
            header = len(reader.fieldnames or ())
            raise ConfigError(f"register map {name}, line {n}: {found} fields, the header names {header}")
        try:
            regs.append(_register(row, obis_table or {}, address=int(row["address"], 0), name=row["name"].strip()))
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"register map {name}, line {n}: {exc}") from None
    try:
        return RegisterMap(
            name=name,
            registers=tuple(regs),
            word_order=options.get("word_order", "big"),
            max_registers=int(options.get("max_registers", 80)),
            even=options.get("even", "true").lower() == "true",
            max_gap=int(options.get("max_gap", 16)),
        )
    except ValueError as exc:
        raise ConfigError(f"register map {name}: {exc}") from None


def _data(filename: str) -> str:
    return resources.files("protocols.modbus").joinpath("maps").joinpath(filename).read_text(encoding="utf-8")


@functools.cache
def _builtin(name: str) -> RegisterMap:
    if name in ("sdm630", "sdm120"):
        regmap = read_map_csv(_data(f"eastron_{name}_registers.csv"), name, obis_table=EASTRON_OBIS)
        return RegisterMap(
            name,
            regmap.registers,
            identity={"serial": "serial_number", "firmware": "software_version"},
        )
    if name == "breaker":
        return read_map_csv(_data("amiflow_breaker.csv"), name)
    known = ", ".join(MAP_NAMES)
    raise ConfigError(f"unknown Modbus register map {name!r}; expected one of {known}, a+b, or a .csv file path")


def load_map(name: str) -> RegisterMap:
    """A map by name (``sdm630``, ``sdm120``, ``breaker``, ``a+b``) or CSV path. ``sunspec`` is discovered on the
    device: use :func:`sunspec_model` per model found."""
    name = "+".join(name.split()) if not name.endswith(".csv") else name  # '+' in a URI query decodes to ' '
    if name.endswith(".csv"):
        path = Path(name)
        try:
            return read_map_csv(path.read_text(encoding="utf-8"), path.stem)
        except OSError as exc:
            raise ConfigError(f"register map {name}: cannot read: {exc.strerror}") from None
    if "+" in name:
        parts = [load_map(p) for p in name.split("+")]
        return _union(name, parts)
    return _builtin(name)


def _union(name: str, parts: Iterable[RegisterMap]) -> RegisterMap:
    maps = list(parts)
    first = maps[0]
    identity: dict[str, str] = {}
    for m in maps:
        identity.update(m.identity)
    return RegisterMap(
        name,
        tuple(r for m in maps for r in m.registers),
        word_order=first.word_order,
        max_registers=min(m.max_registers for m in maps),
        even=any(m.even for m in maps),
        max_gap=min(m.max_gap for m in maps),
        identity=identity,
        parts=tuple(maps),
    )


@functools.cache
def _model_rows(model: int) -> tuple[dict[str, str], ...]:
    name = "sunspec_model_1_common.csv" if model == 1 else f"sunspec_model_{model}.csv"
    try:
        text = _data(name)
    except FileNotFoundError:
        raise ConfigError(f"SunSpec model {model} is not in the register maps") from None
    return tuple(csv.DictReader(io.StringIO(text)))


def sunspec_model(model: int, start: int) -> RegisterMap:
    """SunSpec model ``model`` whose ID register is at ``start``: its points at ``start + offset`` (holding
    registers), scale factors resolved by name, sentinel values not implemented."""
    regs = []
    for row in _model_rows(model):
        if row["type"] == "pad":
            continue
        count = int(row.get("size") or 1)
        regs.append(
            _register(
                {**row, "function_code": "3", "access": row.get("access") or "R"},
                SUNSPEC_OBIS if model != 1 else {},
                address=start + int(row["offset"]),
                name=row["name"],
                count=count,
            )
        )
    return RegisterMap(
        f"sunspec:{model}",
        tuple(regs),
        max_registers=MAX_PDU_REGISTERS,
        even=False,
        max_gap=MAX_PDU_REGISTERS,  # every offset of a model is defined (SunSpec): reads may span unused points
        sunspec=True,
        identity={"manufacturer": "Mn", "model": "Md", "firmware": "Vr", "serial": "SN"} if model == 1 else {},
    )
