"""The commissioning session of an SML push meter (German/Austrian eHZ on its optical port, or behind a TCP serial
server): it listens, since a push meter takes no requests.

The session opens the link (9600 8N1 by default, or the URI's ``?baud=``), listens for up to ``?listen=`` seconds
(default 10: two to five push periods) until two good SML files have arrived, and answers from them: identity from
the file's server id (the nameplate form ``1 EMH00 12345678``, the compact form as the suggested registry name, the
manufacturer's FLAG id), the values of the newest file in base units, and the OBIS list seen. Noise and bad frames
in the window count against the link quality; no bytes at all is a :class:`~amiflow.errors.ReadTimeout`, only bad
frames a :class:`~amiflow.errors.ProtocolError`. Most eHZ send a seconds counter rather than a clock, so the clock
check is skipped unless the file carries a real timestamp; an SML meter has no supply relay a head-end switches.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import numpy as np

from amiflow.errors import ConfigError, ProtocolError, ReadTimeout
from amiflow.types import ReadingBatch
from amiflow.uri import MeterUri
from ingest.meter_quantities import Quantity, RelayState

__all__ = ["SmlSession"]

_WANTED_FILES = 2


class SmlSession:
    """A :class:`~ingest.meter_sessions.SheetSession` that reads what an SML meter pushes."""

    has_profile = False

    def __init__(self, meter: str, uri: MeterUri, timeout_s: float) -> None:
        from protocols.transport import open_link

        self._meter = meter
        self._listen_s = float(uri.params.get("listen", "10"))
        if not 0 < self._listen_s <= 300:
            raise ConfigError(f"meter URI {uri.text!r}: listen={self._listen_s:g} must be 0-300 seconds")
        self._link = open_link(uri, timeout_s=max(timeout_s, 1.0))
        self._files: list[Any] = []  # SmlFileReadings of the good files, oldest first
        self._server_ids: list[bytes] = []
        self._listened = False
        self.faults = 0
        self.skipped_bytes = 0

    async def __aenter__(self) -> SmlSession:
        await self._link.__aenter__()
        return self

    async def __aexit__(self, et: Any, e: Any, tb: Any) -> None:
        await self._link.__aexit__(et, e, tb)

    async def _listen(self) -> None:
        if self._listened:
            return
        from protocols.sml import FrameFault, SmlStreamDecoder, parse_messages, sml_readings

        self._listened = True
        decoder = SmlStreamDecoder()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._listen_s
        heard = False
        while len(self._files) < _WANTED_FILES and (left := deadline - loop.time()) > 0:
            try:
                chunk = await self._link.read(65_536, timeout_s=left)
            except ReadTimeout:
                break
            heard = heard or bool(chunk)
            decoder.receive_data(chunk)
            while (event := decoder.next_event()) is not None:
                if isinstance(event, FrameFault):
                    self.faults += 1
                    continue
                messages, _ = parse_messages(event.body, trusted=True)
                result = sml_readings(messages, received_ts=int(datetime.now(UTC).timestamp()))
                if len(result.batch):
                    self._files.append(result)
                    self._server_ids += [
                        s for m in messages if isinstance(s := getattr(m.body, "server_id", None), bytes) and s
                    ]
        self.skipped_bytes = decoder.skipped
        if not self._files:
            if not heard:
                raise ReadTimeout(f"meter {self._meter}: no SML bytes within {self._listen_s:g} s (head on the port?)")
            raise ProtocolError(f"meter {self._meter}: {self.faults} bad SML frame(s) and no good file in the window")

    async def identify(self) -> dict[str, Any]:
        from protocols.sml import format_server_id

        await self._listen()
        newest = self._files[-1]
        raw = self._server_ids[0] if self._server_ids else None
        ident: dict[str, Any] = {"serial": newest.meter, "obis": sorted({str(o) for o in newest.batch.obis})}
        if raw is not None:
            ident["serial"] = format_server_id(raw)
            ident["registry_name"] = format_server_id(raw, compact=True)
            flag = ident["registry_name"][1:4] if len(ident["registry_name"]) > 4 else ""
            if flag.isalpha():
                ident["manufacturer"] = flag
        return ident

    async def read_clock(self) -> datetime | None:
        await self._listen()
        newest = self._files[-1]
        if newest.clock != "meter" or not len(newest.batch):
            return None  # a seconds counter, not a clock
        return datetime.fromtimestamp(int(np.max(newest.batch.ts)), UTC)

    async def set_clock(self, when: datetime) -> None:
        raise ConfigError(f"meter {self._meter}: an SML push meter takes no requests; its clock cannot be set")

    async def read_registers(self, at: datetime) -> ReadingBatch:
        await self._listen()
        batch: ReadingBatch = self._files[-1].batch
        if not len(batch):
            return batch
        return ReadingBatch(
            np.full(len(batch), self._meter, dtype=object),
            batch.obis,
            np.full(len(batch), int(at.timestamp()), dtype=np.int64),
            batch.value,
            batch.quality,
            batch.source,
            batch.unit,
        )

    async def read_quantities(self) -> list[Quantity]:
        batch = await self.read_registers(datetime.now(UTC))
        return [
            Quantity(str(o), float(v), str(u), float(v), str(u), "SML unit and scaler (value in its base unit)")
            for o, v, u in zip(batch.obis, batch.value, batch.unit, strict=True)
        ]

    async def read_relay(self) -> RelayState:
        return RelayState(False, detail="an SML push meter carries no relay a head-end switches")

    async def read_profile(self, after: datetime, until: datetime) -> ReadingBatch:
        return ReadingBatch()
