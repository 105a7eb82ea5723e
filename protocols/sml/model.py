"""SML message data model (SML 1.04 clause 5 / BSI TR-03109-1 Anlage IV 5.1): frozen dataclasses, no parsing.

Field order and names follow the spec's ASN.1 (SML_PublicOpen.Res, SML_GetList.Res, SML_ListEntry ...); an absent
OPTIONAL field is None. Each body class carries its messageBody choice tag as ``TAG``. :mod:`.messages` decodes
these from bytes and :mod:`.encoder` encodes them. Integer fields of any width (``status``, ``value``) may hold a
:class:`~.tlv.Typed` for the encoder, to send a meter's own wire type; decoded messages always hold plain ints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias

from amiflow.types import Obis

from .tlv import SmlValue, Typed

__all__ = [
    "EPOCH_2000",
    "AttentionRes",
    "Body",
    "GetListRes",
    "GetProfileListRes",
    "ListEntry",
    "PeriodEntry",
    "PublicCloseReq",
    "PublicCloseRes",
    "PublicOpenReq",
    "PublicOpenRes",
    "SmlMessage",
    "SmlTime",
    "UnknownBody",
]

EPOCH_2000: Final = 946_684_800  # a "timestamp" below this is an unset meter clock, not a time


@dataclass(frozen=True, slots=True)
class SmlTime:
    """SML_Time: ``kind`` 1 secIndex (seconds since an arbitrary start), 2 timestamp (UTC epoch seconds),
    3 localTimestamp (UTC timestamp plus local and season offsets in minutes)."""

    kind: int
    value: int
    local_offset_min: int = 0
    season_offset_min: int = 0

    @property
    def epoch_s(self) -> int | None:
        """Epoch seconds UTC when this is a real, set clock; None for a secIndex or an unset clock."""
        return self.value if self.kind in (2, 3) and self.value >= EPOCH_2000 else None


@dataclass(frozen=True, slots=True)
class ListEntry:
    """SML_ListEntry: one OBIS value of a GetList.Res; ``value`` int, bytes, bool, tuple (a list value) or None."""

    obj_name: bytes
    status: int | Typed | None = None
    val_time: SmlTime | None = None
    unit: int | None = None
    scaler: int | None = None
    value: SmlValue | Typed = None
    value_signature: bytes | None = None

    @property
    def obis(self) -> Obis | None:
        return Obis.from_bytes(self.obj_name) if len(self.obj_name) == 6 else None


@dataclass(frozen=True, slots=True)
class PeriodEntry:
    """SML_PeriodEntry of a GetProfileList.Res."""

    obj_name: bytes
    unit: int | None = None
    scaler: int | None = None
    value: SmlValue | Typed = None
    value_signature: bytes | None = None


@dataclass(frozen=True, slots=True)
class PublicOpenReq:
    """SML_PublicOpen.Req: a client opens a session (codepage, ids, username/password, version)."""

    TAG: ClassVar[int] = 0x0100
    codepage: bytes | None
    client_id: bytes | None
    req_file_id: bytes | None
    server_id: bytes | None = None
    username: bytes | None = None
    password: bytes | None = None
    sml_version: int | None = None


@dataclass(frozen=True, slots=True)
class PublicOpenRes:
    """SML_PublicOpen.Res: the first message of a meter's push, with its server id."""

    TAG: ClassVar[int] = 0x0101
    codepage: bytes | None
    client_id: bytes | None
    req_file_id: bytes | None
    server_id: bytes | None
    ref_time: SmlTime | None = None
    sml_version: int | None = None


@dataclass(frozen=True, slots=True)
class PublicCloseReq:
    """SML_PublicClose.Req: a client ends a session."""

    TAG: ClassVar[int] = 0x0200
    global_signature: bytes | None = None


@dataclass(frozen=True, slots=True)
class PublicCloseRes:
    """SML_PublicClose.Res: the last message of a file."""

    TAG: ClassVar[int] = 0x0201
    global_signature: bytes | None = None


@dataclass(frozen=True, slots=True)
class GetListRes:
    """SML_GetList.Res: the values (``entries``) of a list such as 0100620affff, the meter's push."""

    TAG: ClassVar[int] = 0x0701
    client_id: bytes | None
    server_id: bytes | None
    list_name: bytes | None
    act_sensor_time: SmlTime | None
    entries: tuple[ListEntry, ...]
    list_signature: bytes | None = None
    act_gateway_time: SmlTime | None = None


@dataclass(frozen=True, slots=True)
class GetProfileListRes:
    """SML_GetProfileList.Res: one period of a load profile (``periods`` at ``val_time``)."""

    TAG: ClassVar[int] = 0x0401
    server_id: bytes | None
    act_time: SmlTime | None
    reg_period: int | None
    tree_path: tuple[bytes, ...]
    val_time: SmlTime | None
    status: int | None
    periods: tuple[PeriodEntry, ...]
    raw_data: bytes | None = None
    period_signature: bytes | None = None


@dataclass(frozen=True, slots=True)
class AttentionRes:
    """SML_Attention.Res: an error or note from the server (``attention_no``, e.g. 81 81 c7 c7 fe 03)."""

    TAG: ClassVar[int] = 0xFF01
    server_id: bytes | None
    attention_no: bytes
    message: bytes | None = None
    details: SmlValue = None


@dataclass(frozen=True, slots=True)
class UnknownBody:
    """A message body this codec does not decode, kept as its TLV value."""

    tag: int
    value: SmlValue


Body: TypeAlias = (
    PublicOpenReq
    | PublicOpenRes
    | PublicCloseReq
    | PublicCloseRes
    | GetListRes
    | GetProfileListRes
    | AttentionRes
    | UnknownBody
)


@dataclass(frozen=True, slots=True)
class SmlMessage:
    """One SML message: transactionId, groupNo, abortOnError, body, and which CRC variant it carried."""

    transaction_id: bytes
    group_no: int
    abort_on_error: int
    body: Body
    crc_variant: str = "x25"

    @property
    def tag(self) -> int:
        return self.body.tag if isinstance(self.body, UnknownBody) else self.body.TAG
