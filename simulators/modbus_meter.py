"""The register image of a simulated Modbus energy meter: the map it serves and the words a read returns at a time.

Values come from the shared load model (:class:`simulators.load.LoadModel`, ``meter_index`` and ``seed``): the
import/export energy registers are the model's cumulative registers at the time of the read (monotonic), power is the
current interval's mean, split over three phases, with voltages near 230 V and currents P/V; ``wiring``
(:mod:`simulators.wiring`) injects installation faults (a reversed CT, swapped phases, low voltage ...).
Maps: ``sdm630`` and ``sdm120`` (input registers, float32; with ``+breaker`` a relay at holding 4096) and
``sunspec`` (the SunS marker at ``sunspec_base``, common model 1, meter model 203 with scale factors or 213 in
float32, end marker).

Pure: no I/O and no clock (the time is a parameter); the pymodbus server around it is :mod:`simulators.modbus`.
"""

from __future__ import annotations

from collections.abc import Callable

from protocols.modbus.maps import load_map, sunspec_model
from protocols.modbus.registers import Register, RegisterMap, encode_value
from simulators.load import LoadModel
from simulators.wiring import DEFAULT_PF, Wiring, parse_wiring, phase_supply

__all__ = ["ModbusMeter"]

_SLOT_S = 900


def _meter_values(model: LoadModel, meter_index: int, now: float, wiring: Wiring | None = None) -> dict[str, float]:
    """Engineering values of a meter at ``now`` from the load model (energy in Wh, power in W), as ``wiring``
    (:mod:`simulators.wiring`) makes the meter see them."""
    ts = int(now)
    slot_end = (ts // _SLOT_S + 1) * _SLOT_S
    import_wh = float(model.register_wh(meter_index, ts))
    export_wh = float(model.export_register_wh(meter_index, ts))
    p_imp = float(model.interval_energy_wh(meter_index, slot_end)) * 3600.0 / _SLOT_S
    p_exp = float(model.export_energy_wh(meter_index, slot_end)) * 3600.0 / _SLOT_S
    power = p_imp - p_exp
    wobble = ((meter_index * 7919 + ts // 60) % 41 - 20) / 10.0  # +-2 V, changing each minute
    volts = [230.0 + wobble, 230.5 - wobble / 2, 229.5 + wobble / 3]
    wiring = wiring or Wiring()
    supply = phase_supply(power, volts, wiring)
    ct, vt = wiring.ct_ratio or (1.0, 1.0), wiring.vt_ratio or (1.0, 1.0)
    out = {
        "import_wh": import_wh,
        "export_wh": export_wh,
        "power_w": sum(supply.watts),
        "hz": supply.frequency,
        "pf": wiring.pf if wiring.pf is not None else DEFAULT_PF,
        "ct_primary": ct[0],
        "ct_secondary": ct[1],
        "vt_primary": vt[0],
        "vt_secondary": vt[1],
    }
    for i in range(3):
        out[f"v{i + 1}"] = supply.volts[i]
        out[f"a{i + 1}"] = supply.amps[i]
        out[f"w{i + 1}"] = supply.watts[i]
        out[f"pf{i + 1}"] = supply.pf[i]
        out[f"ia{i + 1}"] = supply.current_angle[i]
    return out


_EASTRON_VALUES: dict[str, Callable[[dict[str, float]], float]] = {
    "l1_voltage": lambda v: v["v1"],
    "l2_voltage": lambda v: v["v2"],
    "l3_voltage": lambda v: v["v3"],
    "voltage": lambda v: v["v1"],
    "voltage_ln": lambda v: (v["v1"] + v["v2"] + v["v3"]) / 3,
    "l1_current": lambda v: v["a1"],
    "l2_current": lambda v: v["a2"],
    "l3_current": lambda v: v["a3"],
    "current": lambda v: v["a1"] * 3,
    "total_line_current": lambda v: v["a1"] + v["a2"] + v["a3"],
    "l1_power_active": lambda v: v["w1"],
    "l2_power_active": lambda v: v["w2"],
    "l3_power_active": lambda v: v["w3"],
    "l1_power_factor": lambda v: v["pf1"],
    "l2_power_factor": lambda v: v["pf2"],
    "l3_power_factor": lambda v: v["pf3"],
    "l1_phase_angle": lambda v: v["ia1"],
    "l2_phase_angle": lambda v: v["ia2"],
    "l3_phase_angle": lambda v: v["ia3"],
    "total_power_active": lambda v: v["power_w"],
    "power_active": lambda v: v["power_w"],
    "total_power_factor": lambda v: v["pf"],
    "power_factor": lambda v: v["pf"],
    "frequency": lambda v: v["hz"],
    "import_energy_active": lambda v: v["import_wh"] / 1000,
    "export_energy_active": lambda v: v["export_wh"] / 1000,
    "total_energy_active": lambda v: (v["import_wh"] + v["export_wh"]) / 1000,
    "l1_voltage_thd": lambda v: 1.5,
    "ct_primary": lambda v: v["ct_primary"],
    "ct_secondary": lambda v: v["ct_secondary"],
    "vt_primary": lambda v: v["vt_primary"],
    "vt_secondary": lambda v: v["vt_secondary"],
}
_SUNSPEC_VALUES: dict[str, Callable[[dict[str, float]], float]] = {
    "AphA": lambda v: v["a1"],
    "AphB": lambda v: v["a2"],
    "AphC": lambda v: v["a3"],
    "A": lambda v: v["a1"] + v["a2"] + v["a3"],
    "PhVphA": lambda v: v["v1"],
    "PhVphB": lambda v: v["v2"],
    "PhVphC": lambda v: v["v3"],
    "PhV": lambda v: (v["v1"] + v["v2"] + v["v3"]) / 3,
    "Hz": lambda v: v["hz"],
    "W": lambda v: v["power_w"],
    "WphA": lambda v: v["w1"],
    "WphB": lambda v: v["w2"],
    "WphC": lambda v: v["w3"],
    "TotWhImp": lambda v: v["import_wh"],
    "TotWhExp": lambda v: v["export_wh"],
    "PF": lambda v: v["pf"] * 100,
    "PFphA": lambda v: v["pf1"] * 100,
    "PFphB": lambda v: v["pf2"] * 100,
    "PFphC": lambda v: v["pf3"] * 100,
}
# scale factors of the int16/acc32 model: A 0.01 A, V 0.1 V, Hz 0.01 Hz, W 1 W, Wh 1 Wh, PF 0.01 %
_SUNSPEC_SF = {"A_SF": -2, "V_SF": -1, "Hz_SF": -2, "W_SF": 0, "TotWh_SF": 0, "PF_SF": -2}


class ModbusMeter:
    """One meter's register image: ``regmap`` (what it serves), ``static`` (fixed words such as SunSpec markers,
    strings and the serial number: fc -> address -> word) and :meth:`snapshot` (every word at a time)."""

    def __init__(
        self,
        map_name: str = "sdm630",
        *,
        unit: int = 1,
        meter_index: int = 0,
        seed: int = 1,
        sunspec_base: int = 40000,
        sunspec_meter_model: int = 203,
        word_order: str = "big",
        wiring: Wiring | str | None = None,
    ) -> None:
        self.map_name = map_name
        self.wiring = parse_wiring(wiring)
        self.unit = unit
        self.meter_index = meter_index
        self.sunspec_base = sunspec_base
        self.sunspec_meter_model = sunspec_meter_model
        self.word_order = word_order
        self._model = LoadModel(seed)
        self.regmap, self.static = self._build_map()

    def _build_map(self) -> tuple[RegisterMap, dict[int, dict[int, int]]]:
        """The map served and its static words ((fc -> address -> word)) such as SunSpec markers and strings."""
        static: dict[int, dict[int, int]] = {3: {}, 4: {}}
        if self.map_name != "sunspec":
            regmap = load_map(self.map_name)
            relay = regmap.relay
            if relay is not None:
                static[3][relay.address] = 1  # closed: supply connected
            serial = next((r for r in regmap.registers if r.name == "serial_number"), None)
            if serial is not None:
                for i, w in enumerate(encode_value(serial, 10_000_000 + self.meter_index)):
                    static[3][serial.address + i] = w
            return regmap, static
        base = self.sunspec_base
        common = sunspec_model(1, base + 2)
        meter = sunspec_model(self.sunspec_meter_model, base + 2 + 68)
        length = max(r.address + r.count for r in meter.registers) - (base + 2 + 68) - 2
        static[3].update({base: 0x5375, base + 1: 0x6E53, base + 2: 1, base + 3: 66})
        static[3].update({base + 70: self.sunspec_meter_model, base + 71: length})
        end = base + 72 + length
        static[3].update({end: 0xFFFF, end + 1: 0})
        strings = {
            "Mn": "amiflow",
            "Md": f"SIM{self.sunspec_meter_model}",
            "Vr": "1.0.0",
            "SN": f"SN{10_000_000 + self.meter_index}",
            "Opt": "",
        }
        for reg in common.registers:
            if reg.name in strings:
                for i, w in enumerate(encode_value(reg, strings[reg.name])):
                    static[3][reg.address + i] = w
        static[3][base + 2 + 66] = self.unit
        regs = tuple(r for r in meter.registers if r.name not in ("ID", "L"))
        return RegisterMap(meter.name, regs, max_registers=125, even=False, max_gap=0, sunspec=True), static

    def _values(self, ts: float) -> dict[str, float | None]:
        v = _meter_values(self._model, self.meter_index, ts, self.wiring)
        table = _SUNSPEC_VALUES if self.regmap.sunspec else _EASTRON_VALUES
        out: dict[str, float | None] = {}
        for reg in self.regmap.registers:
            if reg.type == "sunssf":
                out[reg.name] = float(_SUNSPEC_SF.get(reg.name, 0)) if reg.name in _SUNSPEC_SF else None
            elif reg.name in table:
                out[reg.name] = table[reg.name](v)
            elif self.regmap.sunspec:
                out[reg.name] = None  # not implemented
        return out

    def _words(self, reg: Register, value: float | None) -> list[int]:
        if reg.scale_ref is not None and value is not None:
            value = value / 10.0 ** _SUNSPEC_SF.get(reg.scale_ref, 0)
        return encode_value(reg, value, word_order=self.word_order, sunspec=self.regmap.sunspec)

    def snapshot(self, ts: float) -> dict[int, dict[int, int]]:
        """The full register image at ``ts`` (fc -> address -> word); what a read returns, faults aside."""
        image = {fc: dict(words) for fc, words in self.static.items()}
        values = self._values(ts)
        for reg in self.regmap.registers:
            if reg.name in values and not reg.writable:
                for i, w in enumerate(self._words(reg, values[reg.name])):
                    image[reg.function_code][reg.address + i] = w
        return image

    def blocks(self) -> dict[int, list[tuple[int, int]]]:
        """(start, count) ranges per function code: every register, and holes of at most ``max_gap`` filled
        (reads across them are legal, as on an Eastron); SunSpec serves its whole chain as one range."""
        spans: dict[int, list[tuple[int, int]]] = {3: [], 4: []}
        for reg in self.regmap.registers:
            spans[reg.function_code].append((reg.address, reg.end))
        for fc, words in self.static.items():
            spans[fc].extend((a, a + 1) for a in words)
        parts = self.regmap.parts or (self.regmap,)
        gap = 0 if self.regmap.sunspec else max(p.max_gap for p in parts)
        out: dict[int, list[tuple[int, int]]] = {}
        for fc, items in spans.items():
            merged: list[list[int]] = []
            for start, end in sorted(items):
                if merged and start - merged[-1][1] <= (2 if self.regmap.sunspec else gap):
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            even = not self.regmap.sunspec and any(p.even for p in parts)
            out[fc] = [(a, b - a + ((b - a) % 2 if even else 0)) for a, b in merged]
        return out

    def breaks_limits(self, function_code: int, address: int, count: int) -> bool:
        """True when a read breaks the vendor limits of the part of the map it touches."""
        for part in self.regmap.parts or (self.regmap,):
            touched = any(
                r.function_code == function_code and r.address < address + count and address < r.end
                for r in part.registers
            )
            if touched and ((part.even and count % 2) or count > part.max_registers):
                return True
        return False
