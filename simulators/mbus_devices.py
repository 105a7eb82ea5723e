"""Simulated M-Bus slaves: heat, water, gas and electricity meters with distinct makers' record layouts.

Each :class:`SimSlave` holds the link-layer state of one slave (primary address, secondary selection, the FCB of
the last answered REQ_UD2) and builds its telegrams from its clock::

    heat         KAM (Kamstrup MULTICAL-like), medium 04: two telegrams (DIF 1F), energy kWh, volume 0.01 m3,
                 on time h, flow/return temperature 0.01 degC, difference 0.01 K, power 0.1 kW, flow 1 l/h,
                 date and time; telegram 2: maxima and the last billing date's values (storage 1)
    water        ACW (Itron Cyble-like), medium 07: BCD volume in l, storage 1 volume and date, error flags (FD 17)
    gas          ELS (Elster-like), medium 03: BCD volume in 0.01 m3, BCD flow 0.001 m3/h, external temperature
    electricity  ABB (ABB EQ-like), medium 02: BCD-12 import and export (VIFE 3C) in 0.01 kWh from the load
                 model, power W, voltage 0.1 V and current 0.01 A (FD 48 / FD 5A), two tariffs

``SimSlave.answer(frame)`` returns the bytes the slave puts on the bus for a request (or None): E5 for SND_NKE,
a selection that matches, SND_UD; RSP_UD for REQ_UD2 (a repeated FCB repeats the last telegram, EN 13757-2 5.5).
A slave with a ``key`` encrypts its records with OMS security mode 5 (AES-128-CBC, the IV from its header):
``2F 2F`` verification bytes, the records, idle fillers up to a whole block (before a final DIF 1F), as OMS meters
send them; :func:`sim_key` derives a per-meter key from the seed and the ident number (``--encrypt``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import numpy as np

from amiflow.errors import ConfigError
from protocols.mbus.datafield import encode_date_g, encode_datetime_f
from protocols.mbus.encoder import MORE_RECORDS, encode_record, rsp_ud
from protocols.mbus.header import DeviceHeader, encode_manufacturer, ident_bytes
from protocols.mbus.link import ADDRESS_SELECTED, FCB, LongFrame, ShortFrame
from protocols.mbus.security import encrypt_mode5
from simulators.load import LoadModel

__all__ = ["KINDS", "SimSlave", "encrypt_records", "parse_devices", "sim_key"]

KINDS: Final = ("heat", "water", "gas", "electricity")
DEFAULT_DEVICES: Final = "heat:1,water:2,gas:3,electricity:4"
_MAKERS: Final = {"heat": ("KAM", 0x1B, 0x04), "water": ("ACW", 0x14, 0x07), "gas": ("ELS", 0x0A, 0x03),
                  "electricity": ("ABB", 0x20, 0x02)}  # fmt: skip
_T0: Final = 1_700_000_000


@dataclass
class SimSlave:
    """One slave on the simulated bus."""

    kind: str
    address: int
    ident: str
    seed: int = 1
    meter_index: int = 0
    key: bytes | None = field(default=None, repr=False)
    selected: bool = False
    requests: int = 0
    _last_fcb: bool | None = field(default=None, repr=False)
    _index: int = field(default=0, repr=False)
    _last: bytes = field(default=b"", repr=False)
    _access: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"M-Bus device kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        self.manufacturer, self.version, self.medium = _MAKERS[self.kind]
        self._model = LoadModel(self.seed)

    def header(self, config: int = 0) -> DeviceHeader:
        return DeviceHeader(self.ident, self.manufacturer, self.version, self.medium, self._access & 0xFF, 0, config)

    def _mine(self, address: int) -> bool:
        return address == self.address or address in (0xFE, 0xFF) or (address == ADDRESS_SELECTED and self.selected)

    def answer(self, frame: ShortFrame | LongFrame, ts: float) -> bytes | None:
        """The bytes this slave sends for ``frame`` (None: it stays silent)."""
        if isinstance(frame, ShortFrame):
            if not self._mine(frame.a):
                return None
            if frame.c & 0x4F == 0x40:  # SND_NKE
                self._last_fcb, self._index = None, 0
                if frame.a == ADDRESS_SELECTED:
                    self.selected = False
                return None if frame.a == 0xFF else b"\xe5"
            if frame.c & 0x4F == 0x4B and frame.a != 0xFF:  # REQ_UD2
                return self._rsp_ud(bool(frame.c & FCB), bool(frame.c & 0x10), ts)
            return None
        if frame.a == ADDRESS_SELECTED and frame.ci in (0x52, 0x56):
            self.selected = self._matches(frame.data)
            return b"\xe5" if self.selected else None
        if self._mine(frame.a) and frame.c & 0x4F == 0x43 and frame.a != 0xFF:  # SND_UD: data for the slave
            return b"\xe5"
        return None

    def _matches(self, data: bytes) -> bool:
        if len(data) < 8:
            return False
        want, mine = data[0:4][::-1].hex().upper(), self.ident
        if any(w not in ("F", m) for w, m in zip(want, mine, strict=True)):
            return False
        mfr_ok = data[4:6] in (b"\xff\xff", encode_manufacturer(self.manufacturer))
        return mfr_ok and data[6] in (0xFF, self.version) and data[7] in (0xFF, self.medium)

    def _rsp_ud(self, fcb: bool, fcv: bool, ts: float) -> bytes:
        self.requests += 1
        if fcv and self._last and fcb == self._last_fcb:
            return self._last  # the master did not get our answer: the same telegram again
        telegrams = self.telegrams(ts)
        if self._index >= len(telegrams):
            self._index = 0
        records = telegrams[self._index]
        self._index += 1
        self._access += 1
        address = self.address if self.address <= 250 else 0
        if self.key is None:
            self._last = rsp_ud(address, self.header(), records).to_bytes()
        else:
            header, data = encrypt_records(self.key, self.header(), records)
            self._last = rsp_ud(address, header, data).to_bytes()
        self._last_fcb = fcb if fcv else None
        return self._last

    # -- the meters' data ------------------------------------------------------------------------------------------

    def telegrams(self, ts: float) -> list[bytes]:
        """The record blocks of one readout at ``ts`` (epoch seconds): one per telegram."""
        t = int(ts)
        when = datetime.fromtimestamp(t, UTC).replace(tzinfo=None, second=0, microsecond=0)
        clock = encode_record(b"\x6d", encode_datetime_f(when), field=0x04)
        return getattr(self, f"_{self.kind}")(t, clock)  # type: ignore[no-any-return]

    def _wave(self, t: int, period_s: float, phase: float = 0.0) -> float:
        return math.sin(2 * math.pi * t / period_s + phase + self.meter_index)

    def _heat(self, t: int, clock: bytes) -> list[bytes]:
        hours = (t - _T0) / 3600.0
        energy_kwh = 12_000 + int(hours * 2.5)
        flow_t, return_t = 70.0 + 5 * self._wave(t, 86_400), 40.0 + 3 * self._wave(t, 86_400, 1.0)
        power_w = 2_500 + 800 * self._wave(t, 7_200)
        flow_lh = power_w / (1.163 * max(1.0, flow_t - return_t))
        first = (
            encode_record(b"\x78", int(self.ident), field=0x0C)
            + encode_record(b"\x06", energy_kwh)
            + encode_record(b"\x14", int(energy_kwh * 2.1))
            + encode_record(b"\x22", int(hours) + 40_000)
            + encode_record(b"\x59", round(flow_t * 100), field=0x02)
            + encode_record(b"\x5d", round(return_t * 100), field=0x02)
            + encode_record(b"\x61", round((flow_t - return_t) * 100), field=0x02)
            + encode_record(b"\x2d", round(power_w / 100))
            + encode_record(b"\x3b", round(flow_lh))
            + clock
            + MORE_RECORDS
        )
        billing = datetime.fromtimestamp(t, UTC).replace(day=1).date()
        second = (
            encode_record(b"\x2d", round((power_w + 900) / 100), function="maximum")
            + encode_record(b"\x3b", round(flow_lh * 1.4), function="maximum")
            + encode_record(b"\x06", energy_kwh - 1_500, storage=1)
            + encode_record(b"\x14", int((energy_kwh - 1_500) * 2.1), storage=1)
            + encode_record(b"\x6c", encode_date_g(billing), field=0x02, storage=1)
        )
        return [first, second]

    def _water(self, t: int, clock: bytes) -> list[bytes]:
        # 14 l/h x (1.2 + a daily wave): the integral of a rate that never falls below 2.8 l/h, so the register
        # only ever counts up (a cumulative register that ran backwards would be flagged non-monotonic)
        day = 86_400 / (2 * math.pi * 3600)  # hours per radian of the daily wave
        hours = (t - _T0) / 3600.0
        litres = 250_000 + int(14 * (1.2 * hours + day * (1 - math.cos(2 * math.pi * t / 86_400 + self.meter_index))))
        billing = datetime.fromtimestamp(t, UTC).replace(day=1).date()
        block = (
            encode_record(b"\x78", int(self.ident), field=0x0C)
            + encode_record(b"\x13", litres, field=0x0C)
            + encode_record(b"\x13", litres - 9_000, field=0x0C, storage=1)
            + encode_record(b"\x6c", encode_date_g(billing), field=0x02, storage=1)
            + clock
            + encode_record(b"\xfd\x17", 0, field=0x02)
        )
        return [block]

    def _gas(self, t: int, clock: bytes) -> list[bytes]:
        volume = 810_000 + int((t - _T0) / 3600.0 * 31)
        flow = max(0, round(310 + 200 * self._wave(t, 43_200)))
        block = (
            encode_record(b"\x14", volume, field=0x0C)
            + encode_record(b"\x3b", flow, field=0x0B)
            + encode_record(b"\x66", round((12.0 + 6 * self._wave(t, 86_400)) * 10), field=0x02)
            + clock
        )
        return [block]

    def _electricity(self, t: int, clock: bytes) -> list[bytes]:
        import_wh = float(np.asarray(self._model.register_wh(self.meter_index, t)).reshape(-1)[0])
        export_wh = float(np.asarray(self._model.export_register_wh(self.meter_index, t)).reshape(-1)[0])
        before = float(np.asarray(self._model.register_wh(self.meter_index, t - 900)).reshape(-1)[0])
        power_w = max(0.0, (import_wh - before) * 4)
        volts = 230.0 + 4.0 * self._wave(t, 3_600)
        block = (
            encode_record(b"\x04", round(import_wh / 10), field=0x0E)
            + encode_record(b"\x84\x3c", round(export_wh / 10), field=0x0E)
            + encode_record(b"\x04", round(import_wh * 0.6 / 10), field=0x0E, tariff=1)
            + encode_record(b"\x04", round(import_wh * 0.4 / 10), field=0x0E, tariff=2)
            + encode_record(b"\x2b", round(power_w))
            + encode_record(b"\xfd\x48", round(volts * 10), field=0x02)
            + encode_record(b"\xfd\x5a", round(power_w / volts * 100), field=0x02)
            + clock
        )
        return [block]


def sim_key(seed: int, ident: str) -> bytes:
    """The AES-128 key of a simulated meter: derived from the seed and its ident number (test data, not a secret)."""
    return hashlib.sha256(f"amiflow-sim-mbus:{seed}:{ident}".encode()).digest()[:16]


def encrypt_records(key: bytes, header: DeviceHeader, records: bytes) -> tuple[DeviceHeader, bytes]:
    """(the header with security mode 5 and its block count in the config field, the encrypted records)."""
    more = records.endswith(MORE_RECORDS)
    body = records[:-1] if more else records
    tail = MORE_RECORDS if more else b""
    plain = b"\x2f\x2f" + body
    plain += b"\x2f" * (-(len(plain) + len(tail)) % 16) + tail  # idle fillers before DIF 1F: whole blocks
    blocks = len(plain) // 16
    if blocks > 15:
        raise ConfigError(f"M-Bus simulator: {blocks} blocks of records do not fit the config field (15 at most)")
    config = 0x0500 | blocks << 4
    header = DeviceHeader(header.ident, header.manufacturer, header.version, header.medium, header.access,
                          header.status, config)  # fmt: skip
    return header, encrypt_mode5(key, header, plain)


def parse_devices(spec: str | None, *, seed: int = 1, encrypt: bool = False) -> list[SimSlave]:
    """``KIND:ADDRESS[:IDENT],...`` (default ``heat:1,water:2,gas:3,electricity:4``); idents default from the
    address (``7210000A`` style 8 digits) and must be unique per kind and address."""
    slaves = []
    for i, item in enumerate((spec or DEFAULT_DEVICES).split(",")):
        parts = item.strip().split(":")
        if len(parts) not in (2, 3) or parts[0] not in KINDS:
            raise ConfigError(f"--devices {item!r}: expected KIND:ADDRESS[:IDENT] with KIND one of {', '.join(KINDS)}")
        try:
            address = int(parts[1])
        except ValueError:
            raise ConfigError(f"--devices {item!r}: the address is not a number") from None
        if not 0 <= address <= 250:
            raise ConfigError(f"--devices {item!r}: primary address must be 0..250")
        ident = parts[2] if len(parts) == 3 else f"{72_000_000 + KINDS.index(parts[0]) * 1_000 + address:08d}"
        try:
            ident_bytes(ident)
        except ValueError as exc:
            raise ConfigError(f"--devices {item!r}: {exc}") from None
        key = sim_key(seed, ident.upper()) if encrypt else None
        slaves.append(SimSlave(parts[0], address, ident.upper(), seed=seed, meter_index=i, key=key))
    return slaves
