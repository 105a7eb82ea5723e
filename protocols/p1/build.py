"""DSMR P1 telegrams as a meter sends them: identification, data lines, ``!`` and the CRC (DSMR 4/5) or none."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .clock import format_timestamp
from .frame import crc16_arc

__all__ = ["build_telegram", "dsmr5_telegram"]


def build_telegram(header: str, lines: Iterable[str], *, crc: bool = True) -> bytes:
    """A telegram from its identification (without ``/``) and data lines; with the CRC (DSMR 4/5) or without."""
    text = "/" + header + "\r\n\r\n" + "".join(line + "\r\n" for line in lines) + "!"
    raw = text.encode("ascii")
    if crc:
        return raw + f"{crc16_arc(raw):04X}\r\n".encode()
    return raw + b"\r\n"


def dsmr5_telegram(
    *,
    equipment_id: str,
    ts: int,
    import_wh: tuple[float, float],
    export_wh: tuple[float, float] = (0.0, 0.0),
    power_w: tuple[float, float] = (0.0, 0.0),
    voltage_v: Sequence[float] = (230.0,),
    current_a: Sequence[float] = (0.0,),
    gas_m3: tuple[float, int] | None = None,
    header: str = "AMF5\\amiflow-sim",
    tariff: int = 1,
) -> bytes:
    """A DSMR 5.0 telegram as a meter would send it (for the simulators and tests): tariff 1/2 import and export
    registers (Wh, written in kWh with 3 decimals), power, per-phase voltage and current, optional gas (m3, ts)."""
    lines = [
        "1-3:0.2.8(50)",
        f"0-0:1.0.0({format_timestamp(ts)})",
        f"0-0:96.1.1({equipment_id.encode('ascii').hex().upper()})",
        f"1-0:1.8.1({import_wh[0] / 1000:010.3f}*kWh)",
        f"1-0:1.8.2({import_wh[1] / 1000:010.3f}*kWh)",
        f"1-0:2.8.1({export_wh[0] / 1000:010.3f}*kWh)",
        f"1-0:2.8.2({export_wh[1] / 1000:010.3f}*kWh)",
        f"0-0:96.14.0({tariff:04d})",
        f"1-0:1.7.0({power_w[0] / 1000:06.3f}*kW)",
        f"1-0:2.7.0({power_w[1] / 1000:06.3f}*kW)",
    ]
    for phase, v in zip((32, 52, 72), voltage_v, strict=False):
        lines.append(f"1-0:{phase}.7.0({v:05.1f}*V)")
    for phase, a in zip((31, 51, 71), current_a, strict=False):
        lines.append(f"1-0:{phase}.7.0({round(a):03d}*A)")
    if gas_m3 is not None:
        lines += ["0-1:24.1.0(003)", f"0-1:24.2.1({format_timestamp(gas_m3[1])})({gas_m3[0]:09.3f}*m3)"]
    return build_telegram(header, lines)
