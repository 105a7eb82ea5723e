"""M-Bus (EN 13757-2/-3) and wireless M-Bus (EN 13757-4, OMS): amiflow's own sans-I/O codec and master.

The bus of heat, water and gas meters. Layers, each module starting with the layout it implements:

- :mod:`.link` the wired link layer (E5, short, control and long frames, checksum) and :class:`MbusStreamDecoder`;
- :mod:`.header` identity (ident number, manufacturer, version, medium) and the transport headers;
- :mod:`.records` data records (DIF/DIFE, VIF/VIFE), :mod:`.datafield` the data codings, :mod:`.vif` and
  :mod:`.vif_ext` the value information tables; :mod:`.telegram` the CI field and application layer;
- :mod:`.wmbus` wireless frames A and B with their CRCs, :mod:`.security` OMS mode 5 (AES-128-CBC);
- :mod:`.encoder` the slave side (records, RSP_UD), :mod:`.readings` records -> ReadingBatch;
- :mod:`.master` the sans-I/O master (requests, FCB, selection, wildcard search), :mod:`.client` the asyncio
  :class:`MbusMaster` over a :class:`~protocols.transport.Link`, :mod:`.receiver` wM-Bus frames from a stick or a
  line stream of hex;
- :mod:`.capture` a whole capture for ``amiflow decode mbus``.

Bad meter data comes back as :class:`~amiflow.types.Issue` records; the strict ``from_bytes`` entry points raise
:class:`~amiflow.errors.FrameError`. pyMeterBus (BSD-3-Clause) is only a test peer in a child process.
"""

from __future__ import annotations

from .capture import decode_mbus_capture, hex_lines
from .client import MbusMaster, MbusReadout
from .encoder import MORE_RECORDS, encode_dib, encode_long_header, encode_record, rsp_ud
from .header import DeviceHeader, decode_manufacturer, encode_manufacturer, medium_name
from .link import (
    NEED_DATA,
    Ack,
    FrameFault,
    LongFrame,
    MbusFrame,
    MbusStreamDecoder,
    ShortFrame,
    checksum,
    parse_frame,
)
from .master import MasterState, Probe, selection_frame
from .readings import MBUS_SOURCE, MbusReadings, mbus_readings
from .receiver import RawFrame, WmbusReceiver, wmbus_frames
from .records import DataRecord, RecordBlock, parse_records
from .security import KeyRing, decrypt_mode5, encrypt_mode5
from .telegram import Telegram, parse_application
from .wmbus import WmbusFrame, build_wmbus, crc16_en13757, decode_wmbus

__all__ = [
    "MBUS_SOURCE",
    "MORE_RECORDS",
    "NEED_DATA",
    "Ack",
    "DataRecord",
    "DeviceHeader",
    "FrameFault",
    "KeyRing",
    "LongFrame",
    "MasterState",
    "MbusFrame",
    "MbusMaster",
    "MbusReadings",
    "MbusReadout",
    "MbusStreamDecoder",
    "Probe",
    "RawFrame",
    "RecordBlock",
    "ShortFrame",
    "Telegram",
    "WmbusFrame",
    "WmbusReceiver",
    "build_wmbus",
    "checksum",
    "crc16_en13757",
    "decode_manufacturer",
    "decode_mbus_capture",
    "decode_wmbus",
    "decrypt_mode5",
    "encode_dib",
    "encode_long_header",
    "encode_manufacturer",
    "encode_record",
    "encrypt_mode5",
    "hex_lines",
    "mbus_readings",
    "medium_name",
    "parse_application",
    "parse_frame",
    "parse_records",
    "rsp_ud",
    "selection_frame",
    "wmbus_frames",
]
