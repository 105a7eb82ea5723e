"""Wireless M-Bus frames (EN 13757-4 clause 10 / annex B, OMS Vol. 2): formats A and B, their CRCs, the extended
link layer, sans-I/O.

Both formats start with the link header ``L C M(2) A(6)``: L counts the bytes after itself, C the function (44
SND_NR, 46 SND_IR, 08 RSP_UD, ...), M the manufacturer, A = ident(4) version medium. Then the CI field and data.

- Format A (T1/S1/C1): blocks of 10 (the header), then 16 bytes, the last one shorter, each followed by its CRC;
  L does not count the CRC bytes.
- Format B (C1): the header without a CRC, a second block of at most 116 bytes and one CRC over both blocks, an
  optional third block with its own CRC; L counts the CRC bytes.
- Sticks and gateways often deliver frames with the CRCs already checked and removed (``fmt="none"``).

CRC: CRC-16/EN-13757, polynomial 0x3D65, initial value 0, not reflected, final XOR 0xFFFF, sent high byte first.

Extended link layer before the TPL: CI 8C ``CC ACC``, 8E ``CC ACC M(2) A(6)``, 8D/8F add ``SN(4) CRC(2)``; with
SN's encryption bits set (AES-CTR, Kamstrup) the payload is ``unsupported_security``. CI 7A / 72 / 78 follow
(:mod:`.telegram`), decrypted with a :class:`~protocols.mbus.security.KeyRing` in security mode 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from amiflow.errors import FrameError
from amiflow.types import Issue

from .header import DeviceHeader, parse_link_address
from .security import KeyRing
from .telegram import Telegram, parse_application

__all__ = ["WmbusFrame", "build_wmbus", "crc16_en13757", "decode_wmbus"]

_TABLE: Final = []
for _i in range(256):
    _c = _i << 8
    for _ in range(8):
        _c = ((_c << 1) ^ 0x3D65) if _c & 0x8000 else _c << 1
    _TABLE.append(_c & 0xFFFF)


def crc16_en13757(data: bytes | bytearray | memoryview) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ byte]
    return crc ^ 0xFFFF


def _crc(data: bytes) -> bytes:
    return crc16_en13757(data).to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class WmbusFrame:
    """One wM-Bus frame with the CRCs removed: ``link`` the sender of the link header, ``ci`` and ``data``."""

    c: int
    link: DeviceHeader
    ci: int
    data: bytes
    fmt: str = "none"
    raw: bytes = b""

    @classmethod
    def from_bytes(cls, raw: bytes, fmt: str = "auto") -> WmbusFrame:
        """Parse a frame in format ``A``, ``B``, ``none`` (CRCs removed) or ``auto``; FrameError when it is not one."""
        raw = bytes(raw)
        if len(raw) < 11:
            raise FrameError(f"wM-Bus: {len(raw)} bytes is shorter than a link header and CI field")
        if fmt == "auto":
            fmt = _guess(raw)
        if fmt == "A":
            body = _strip_a(raw)
        elif fmt == "B":
            body = _strip_b(raw)
        elif fmt == "none":
            if len(raw) != raw[0] + 1:
                raise FrameError(f"wM-Bus: L field {raw[0]} does not match {len(raw)} bytes")
            body = raw
        else:
            raise FrameError(f"wM-Bus: unknown frame format {fmt!r}")
        if len(body) < 11:  # L = 9 or less: the CRC'd block 1 holds no CI field
            raise FrameError(f"wM-Bus: L field {raw[0]} leaves no room for a link header and CI field")
        return cls(body[1], parse_link_address(body[2:10]), body[10], body[11:], fmt, raw)

    def to_bytes(self) -> bytes:
        return self.raw or build_wmbus(self.c, self.link.address, self.ci, self.data, fmt=self.fmt)


def _a_length(length_field: int) -> int:
    rest = max(0, length_field - 9)
    return length_field + 1 + 2 * (1 + (rest + 15) // 16)


def _guess(raw: bytes) -> str:
    length_field = raw[0]
    if len(raw) == _a_length(length_field):  # format A's length (never B's: L + 1): a failed CRC is the answer
        _strip_a(raw)
        return "A"
    if len(raw) == length_field + 1:
        try:
            _strip_b(raw)
            return "B"
        except FrameError:
            return "none"
    if len(raw) > length_field + 1:
        raise FrameError(f"wM-Bus: {len(raw)} bytes for L = {length_field}: trailing bytes or a bad L field")
    raise FrameError(f"wM-Bus: {len(raw)} bytes, L = {length_field} announces more: the frame is cut short")


def _check(block: bytes, crc: bytes, where: str) -> None:
    if _crc(block) != crc:
        raise FrameError(f"wM-Bus: CRC of {where} is {crc.hex()}, computed {_crc(block).hex()}")


def _strip_a(raw: bytes) -> bytes:
    if len(raw) != _a_length(raw[0]):
        raise FrameError(f"wM-Bus format A: {len(raw)} bytes, L = {raw[0]} needs {_a_length(raw[0])}")
    _check(raw[:10], raw[10:12], "block 1")
    out, pos, block = bytearray(raw[:10]), 12, 2
    while pos < len(raw):
        size = min(16, len(raw) - pos - 2)
        chunk = raw[pos : pos + size]
        _check(chunk, raw[pos + size : pos + size + 2], f"block {block}")
        out += chunk
        pos += size + 2
        block += 1
    return bytes(out)


def _strip_b(raw: bytes) -> bytes:
    if len(raw) != raw[0] + 1 or raw[0] < 12:
        raise FrameError(f"wM-Bus format B: {len(raw)} bytes for L = {raw[0]}")
    if len(raw) <= 128:
        _check(raw[:-2], raw[-2:], "blocks 1-2")
        return bytes((raw[0] - 2,)) + raw[1:-2]
    _check(raw[:126], raw[126:128], "blocks 1-2")
    _check(raw[128:-2], raw[-2:], "block 3")
    return bytes((raw[0] - 4,)) + raw[1:126] + raw[128:-2]


def build_wmbus(c: int, address: bytes, ci: int, data: bytes, *, fmt: str = "A") -> bytes:
    """A frame with the CRCs of format ``A`` or ``B`` (or ``none``); ``address`` = M(2) A(6) of the sender."""
    body = bytes((c,)) + bytes(address) + bytes((ci,)) + bytes(data)
    if fmt == "none":
        return bytes((len(body),)) + body
    if fmt == "B":
        total = len(body) + 2 + (2 if len(body) + 1 > 126 else 0)
        frame = bytes((total,)) + body
        if len(frame) <= 126:
            return frame + _crc(frame)
        head, tail = frame[:126], frame[126:]
        return head + _crc(head) + tail + _crc(tail)
    frame = bytes((len(body),)) + body
    out = bytearray(frame[:10] + _crc(frame[:10]))
    for pos in range(10, len(frame), 16):
        chunk = frame[pos : pos + 16]
        out += chunk + _crc(chunk)
    return bytes(out)


def _ell(frame: WmbusFrame) -> tuple[int, bytes, DeviceHeader, Issue | None]:
    """Strip an extended link layer: -> (CI, data, identity, issue)."""
    ci, data, link = frame.ci, frame.data, frame.link
    sizes = {0x8C: 2, 0x8D: 8, 0x8E: 10, 0x8F: 16}
    if ci not in sizes:
        return ci, data, link, None
    size = sizes[ci]
    if len(data) < size + 1:
        return ci, b"", link, Issue("truncated_header", f"extended link layer {ci:02x} cut short")
    if ci in (0x8D, 0x8F):
        sn = int.from_bytes(data[size - 6 : size - 2], "little")
        if sn >> 29:
            return ci, b"", link, Issue("unsupported_security", "extended link layer AES-CTR is not supported")
    return data[size], data[size + 1 :], link, None


def decode_wmbus(raw: bytes, *, fmt: str = "auto", keys: KeyRing | None = None) -> Telegram:
    """A whole wM-Bus frame -> :class:`Telegram` (the link identity when the TPL has none); FrameError for a frame
    that does not parse (bad CRC, bad length), issues for everything in its payload."""
    frame = WmbusFrame.from_bytes(raw, fmt)
    ci, data, link, issue = _ell(frame)
    if issue is not None:
        return Telegram(frame.ci, link, issues=(issue,), extra=_link_extra(frame))
    telegram = parse_application(ci, data, link=link, keys=keys)
    return Telegram(
        telegram.ci, telegram.header, telegram.records, telegram.issues, telegram.more_follows,
        telegram.manufacturer_data, telegram.decrypted, _link_extra(frame),
    )  # fmt: skip


def _link_extra(frame: WmbusFrame) -> dict[str, Any]:
    return {"link": {"c": f"{frame.c:02x}", "format": frame.fmt, **frame.link.to_dict()}}
