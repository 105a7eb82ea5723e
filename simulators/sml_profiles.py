"""What a simulated SML push meter sends: one SML file per push, shaped like a real make, from the load model.

Profiles (the shapes of the captures in tests/data/sml/, values from :class:`~simulators.load.LoadModel`):

- ``ehz``: an EMH eHZ, server id ``09 01 EMH 00 <n>`` (printed ``1 EMH00 ...``), registers 1.8.0/1.8.1/1.8.2/2.8.0
  as 5-byte Integers with scaler -1 and a 24-bit status, power 16.7.0 as Integer32 (scaler -1), and a 48-byte
  public key 129-129:199.130.5 (a two-byte TL);
- ``itron``: an Itron OpenWay 3.HZ, server id ``0a 01 ITR 00 <n>``, transactionIds of 9 bytes, 1.8.0 as
  Integer64 with scaler -1 and a 24-bit status, power as Integer32, the id again as 1-0:96.1.0;
- ``easymeter``: an EasyMeter Q3A, server id ``09 01 ESY 11 <n>``, registers as Integer64 with scaler -4, total
  and per-phase power as Integer64 (scaler -2), the id as ASCII in 1-0:0.0.0.

Faults (each push picks one with probability ``fault_rate`` among those enabled): ``bit_error`` flips one bit of
the frame (a bad CRC for the reader), ``truncate`` sends only the first part of the frame, ``garbage`` sends
noise (never an escape sequence) before the frame. Pure: no I/O, no clock; the caller passes the time.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Final

import numpy as np

from amiflow.errors import ConfigError
from protocols.sml import (
    GetListRes,
    ListEntry,
    PublicCloseRes,
    PublicOpenRes,
    SmlMessage,
    SmlTime,
    Typed,
    encode_file,
    format_server_id,
)
from simulators.load import LoadModel

__all__ = ["FAULTS", "PROFILES", "SmlMeter"]

PROFILES: Final = ("easymeter", "ehz", "itron")
FAULTS: Final = ("bit_error", "garbage", "truncate")
_LIST_NAME: Final = bytes.fromhex("0100620affff")
_PHASES: Final = (0.42, 0.33, 0.25)


def _obis(text: str) -> bytes:
    return bytes.fromhex(text)


class SmlMeter:
    """One push meter: :meth:`push` gives the bytes of its next push at ``ts`` (epoch seconds)."""

    def __init__(
        self,
        profile: str = "ehz",
        *,
        seed: int = 1,
        meter_index: int = 0,
        faults: Iterable[str] = (),
        fault_rate: float = 0.0,
    ) -> None:
        if profile not in PROFILES:
            raise ConfigError(f"unknown SML profile {profile!r}; known: {', '.join(PROFILES)}")
        self.faults = tuple(sorted(set(faults)))
        if set(self.faults) - set(FAULTS):
            raise ConfigError(f"unknown SML fault(s) {sorted(set(self.faults) - set(FAULTS))}; known: {FAULTS}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ConfigError(f"fault rate {fault_rate}: must be between 0 and 1")
        self.profile = profile
        self.model = LoadModel(seed)
        self.meter_index = meter_index
        self.fault_rate = fault_rate
        self.pushes = 0
        self.faults_injected: dict[str, int] = {}
        self._rng = random.Random(seed * 1_000_003 + meter_index)
        self._tid = self._rng.randrange(1 << 24)
        serial = 10_000_000 + meter_index
        flag, kind, block = {
            "ehz": (b"EMH", 0x09, 0x00),
            "itron": (b"ITR", 0x0A, 0x00),
            "easymeter": (b"ESY", 0x09, 0x11),
        }[profile]
        self.server_id = bytes((kind, 0x01)) + flag + bytes((block,)) + serial.to_bytes(4, "big")

    @property
    def meter_id(self) -> str:
        """The meter id a reader derives from the server id (as on the nameplate)."""
        return format_server_id(self.server_id)

    # -- values --------------------------------------------------------------------------------------------------

    def registers_wh(self, ts: int) -> tuple[int, int]:
        """Import and export register (whole Wh) at ``ts``."""
        imp = float(np.asarray(self.model.register_wh(self.meter_index, ts)).reshape(-1)[0])
        exp = float(np.asarray(self.model.export_register_wh(self.meter_index, ts)).reshape(-1)[0])
        return int(imp), int(exp)

    def power_w(self, ts: int) -> float:
        """Net active power (import positive) over the last 15 minutes, as a meter's 16.7.0 shows it."""
        imp, exp = self.registers_wh(ts)
        imp0, exp0 = self.registers_wh(ts - 900)
        return ((imp - imp0) - (exp - exp0)) * 4.0

    # -- files ---------------------------------------------------------------------------------------------------

    def messages(self, ts: int) -> list[SmlMessage]:
        """The messages of one push at ``ts``: PublicOpen.Res, GetList.Res, PublicClose.Res."""
        imp, exp = self.registers_wh(ts)
        entries = getattr(self, f"_{self.profile}")(imp, exp, self.power_w(ts))
        uptime = SmlTime(1, ts % 100_000_000)
        tid = [self._next_tid() for _ in range(3)]
        return [
            SmlMessage(tid[0], 0, 0, PublicOpenRes(None, None, tid[0][-6:], self.server_id, uptime)),
            SmlMessage(tid[1], 0, 0, GetListRes(None, self.server_id, _LIST_NAME, uptime, tuple(entries))),
            SmlMessage(tid[2], 0, 0, PublicCloseRes()),
        ]

    def file(self, ts: int) -> bytes:
        """One framed SML file, as the meter pushes it when nothing goes wrong."""
        return encode_file(self.messages(ts))

    def push(self, ts: int) -> bytes:
        """The bytes of the next push at ``ts``: the file, with a fault injected now and then."""
        self.pushes += 1
        data = self.file(ts)
        fault = self._rng.choice(self.faults) if self.faults and self._rng.random() < self.fault_rate else None
        if fault is None:
            return data
        self.faults_injected[fault] = self.faults_injected.get(fault, 0) + 1
        if fault == "bit_error":
            buf = bytearray(data)
            i = self._rng.randrange(8, len(buf))
            buf[i] ^= 1 << self._rng.randrange(8)
            return bytes(buf)
        if fault == "truncate":
            return data[: self._rng.randrange(9, len(data) - 1)]
        noise = bytes(self._rng.choice(b"\x00\x01\x1a\x55\xaa\xff\x76abc") for _ in range(self._rng.randint(1, 40)))
        return noise + data

    def _next_tid(self) -> bytes:
        self._tid = (self._tid + 1) & 0xFFFFFFFF
        size = 9 if self.profile == "itron" else 4
        return self._tid.to_bytes(size, "big")

    def _ehz(self, imp: int, exp: int, power: float) -> list[ListEntry]:
        def reg(obis: str, wh: int, status: int | None = 0x182) -> ListEntry:
            st = Typed(status, False, 3) if status is not None else None
            return ListEntry(_obis(obis), st, None, 30, -1, Typed(wh * 10, True, 5))

        return [
            ListEntry(_obis("8181c78203ff"), value=b"EMH"),
            ListEntry(_obis("0100000009ff"), value=self.server_id),
            reg("0100010800ff", imp),
            reg("0100010801ff", imp, None),
            reg("0100010802ff", 0, None),
            reg("0100020800ff", exp),
            ListEntry(_obis("0100100700ff"), None, None, 27, -1, Typed(round(power * 10), True, 4)),
            ListEntry(_obis("8181c78205ff"), value=self._rng.randbytes(48)),
        ]

    def _itron(self, imp: int, exp: int, power: float) -> list[ListEntry]:
        return [
            ListEntry(_obis("010060320101"), value=b"ITR"),
            ListEntry(_obis("0100600100ff"), value=self.server_id),
            ListEntry(_obis("0100010800ff"), Typed(0x1C0104, False, 3), None, 30, -1, Typed(imp * 10, True, 8)),
            ListEntry(_obis("0100020800ff"), Typed(0x1C0104, False, 3), None, 30, -1, Typed(exp * 10, True, 8)),
            ListEntry(_obis("0100100700ff"), None, None, 27, 0, Typed(round(power), True, 4)),
        ]

    def _easymeter(self, imp: int, exp: int, power: float) -> list[ListEntry]:
        def w(obis: str, watts: float) -> ListEntry:
            return ListEntry(_obis(obis), None, None, 27, -2, Typed(round(watts * 100), True, 8))

        return [
            ListEntry(_obis("8181c78203ff"), value=b"ESY"),
            ListEntry(_obis("0100000009ff"), value=self.server_id),
            ListEntry(_obis("0100010800ff"), Typed(0x80, False, 3), None, 30, -4, Typed(imp * 10_000, True, 8)),
            ListEntry(_obis("0100020800ff"), Typed(0x80, False, 3), None, 30, -4, Typed(exp * 10_000, True, 8)),
            w("0100100700ff", power),
            *(
                w(obis, power * share)
                for obis, share in zip(("0100240700ff", "0100380700ff", "01004c0700ff"), _PHASES, strict=True)
            ),
            ListEntry(_obis("0100000000ff"), value=format_server_id(self.server_id, compact=True).encode()),
        ]
