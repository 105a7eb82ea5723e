"""IEC 62056-21 mode C (the optical port, "FLAG" readout): sans-I/O client and meter sides, and an async client.

The exchange (PROTOCOLS.md)::

    client  /?[address]!CR LF                       at 300 Bd 7E1
    meter   /XXXZ[\\W]ident CR LF                     XXX manufacturer, Z the highest baud rate it offers
    client  ACK V Z Y CR LF                          V '0' normal protocol, Z the baud chosen, Y '0' data readout
            (both sides switch to the baud rate of Z)
    meter   STX data-lines ! CR LF ETX BCC           BCC: XOR of every byte after STX up to and including ETX

Data lines hold data sets ``ADDRESS(value*unit)(value)...``; the address is an OBIS code in full
(``1-0:1.8.0``), short (``1.8.0``, A=1 and B=0) or letter form (``C.1.0`` = serial number, ``F.F`` = error
register); a ``*NN`` suffix marks a historic (billing period) value, which is not a current reading. Clock lines
``0.9.1(hh:mm:ss)`` and ``0.9.2(YY-MM-DD)`` give the meter's local time (zone from the URI's ``tz`` parameter,
default UTC).

Sans-I/O pieces: :class:`IecClient` and :class:`IecMeter` (``receive_data`` / ``next_event`` / ``send_*``),
:func:`build_readout`, :func:`parse_readout`. The I/O: :func:`read_iec62056_21` over a transport link.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from amiflow.errors import ConfigError, FrameError, ProtocolError, TransportError
from amiflow.types import Issue, ReadingBatch, Source, normalize_unit, parse_obis
from amiflow.uri import MeterUri
from protocols.transport import Link, SerialLink, open_link

__all__ = [
    "ACK",
    "BAUD_RATES",
    "ETX",
    "MAX_READOUT_BYTES",
    "NAK",
    "NEED_DATA",
    "SOH",
    "STX",
    "Break",
    "DataSet",
    "Identification",
    "IecClient",
    "IecMeter",
    "OptionSelect",
    "ParsedReadout",
    "Readout",
    "SignOn",
    "bcc",
    "build_break",
    "build_identification",
    "build_option_select",
    "build_readout",
    "build_sign_on",
    "parse_data_line",
    "parse_identification",
    "parse_readout",
    "read_iec62056_21",
]

SOH: Final = 0x01
STX: Final = 0x02
ETX: Final = 0x03
ACK: Final = 0x06
NAK: Final = 0x15
NEED_DATA: Final = None
MAX_READOUT_BYTES: Final = 65_536  # a full readout of a large meter is a few KB; more is a runaway stream
_MAX_LINE: Final = 128  # sign-on, identification and option lines are short; a longer one without CR LF is garbage
BAUD_RATES: Final[dict[str, int]] = {
    "0": 300,
    "1": 600,
    "2": 1200,
    "3": 2400,
    "4": 4800,
    "5": 9600,
    "6": 19200,
}


def bcc(data: bytes) -> int:
    """Block check character: XOR of all bytes (give it everything after STX/SOH up to and including ETX)."""
    value = 0
    for b in data:
        value ^= b
    return value


# -- messages ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identification:
    """The meter's ``/XXXZ[\\W]ident`` line: manufacturer (3 letters), baud char, ident text, the whole line."""

    manufacturer: str
    baud_char: str
    ident: str
    text: str

    @property
    def baudrate(self) -> int:
        """The highest rate the meter offers (mode C), 300 for an unknown character."""
        return BAUD_RATES.get(self.baud_char, 300)


@dataclass(frozen=True, slots=True)
class SignOn:
    """``/?address!`` from a client (empty address: any meter)."""

    address: str


@dataclass(frozen=True, slots=True)
class OptionSelect:
    """``ACK V Z Y``: protocol (``0`` normal), baud char, mode (``0`` readout, ``1`` programming)."""

    protocol: str
    baud_char: str
    mode: str


@dataclass(frozen=True, slots=True)
class Break:
    """``SOH B0 ETX BCC``: the client ends the session."""


def build_sign_on(address: str = "") -> bytes:
    """``/?address!\\r\\n``; the address (device address, up to 32 printable characters) is optional."""
    if len(address) > 32 or any(c in "/?!\r\n" or not c.isprintable() for c in address):
        raise ConfigError(f"IEC 62056-21 device address {address!r}: up to 32 printable characters, no / ? !")
    return b"/?" + address.encode("ascii") + b"!\r\n"


def build_identification(manufacturer: str, baud_char: str, ident: str) -> bytes:
    """``/XXXZident\\r\\n``."""
    if len(manufacturer) != 3 or baud_char not in BAUD_RATES:
        raise ConfigError(f"identification: manufacturer must be 3 characters, baud char 0..6; got {manufacturer!r}")
    return f"/{manufacturer}{baud_char}{ident}\r\n".encode("ascii")


def build_option_select(baud_char: str, *, protocol: str = "0", mode: str = "0") -> bytes:
    """``ACK V Z Y CR LF``: e.g. ``build_option_select("5") == b"\\x06050\\r\\n"`` (readout at 9600 Bd)."""
    return bytes([ACK]) + f"{protocol}{baud_char}{mode}\r\n".encode("ascii")


def build_break() -> bytes:
    """``SOH B 0 ETX BCC``."""
    body = b"B0" + bytes([ETX])
    return bytes([SOH]) + body + bytes([bcc(body)])


def build_readout(lines: Iterable[str]) -> bytes:
    """``STX`` lines (each CR LF) ``! CR LF ETX BCC``."""
    body = "".join(line + "\r\n" for line in lines).encode("ascii") + b"!\r\n" + bytes([ETX])
    return bytes([STX]) + body + bytes([bcc(body)])


def parse_identification(line: bytes) -> Identification:
    """``/XXXZ[\\W]ident`` (with or without CR LF) -> :class:`Identification`; FrameError when malformed."""
    text = line.rstrip(b"\r\n").decode("ascii", errors="replace")
    m = re.fullmatch(r"/([A-Za-z]{2}[A-Za-z0-9])([0-9A-Za-z])(\\\d)?([ -~]{0,100})", text)
    if not m:
        raise FrameError(f"not an IEC 62056-21 identification line: {text[:60]!r}")
    return Identification(m[1], m[2], m[4].strip(), text[1:])


# -- data lines ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataSet:
    """One ``ADDRESS(value*unit)...`` data set: the address as written, and (value, unit) per parenthesis."""

    address: str
    values: tuple[tuple[str, str], ...]


_SET_RE = re.compile(r"([0-9A-Za-z][0-9A-Za-z:\-.*&]*)?((?:\([^()]*\))+)")
_NUMBER_RE = re.compile(r"[-+]?\d+(?:\.\d*)?")


def parse_data_line(line: str) -> list[DataSet]:
    """The data sets of one line; a line of only ``(...)`` continues the previous address (address ``""``).

    ValueError when the line has text outside data sets.
    """
    sets: list[DataSet] = []
    pos = 0
    for m in _SET_RE.finditer(line):
        if line[pos : m.start()].strip():
            break
        values = tuple(_split_value(v) for v in re.findall(r"\(([^()]*)\)", m[2]))
        sets.append(DataSet(m[1] or "", values))
        pos = m.end()
    if line[pos:].strip() or not sets:
        raise ValueError(f"not a data line: {line[:60]!r}")
    return sets


def _split_value(text: str) -> tuple[str, str]:
    value, _, unit = text.partition("*")
    return value.strip(), unit.strip()


@dataclass(frozen=True, slots=True)
class ParsedReadout:
    """What a readout block holds: readings (base units), serial, the meter clock, data sets, issues."""

    readings: ReadingBatch
    serial: str | None
    clock: datetime | None
    datasets: tuple[DataSet, ...]
    issues: tuple[Issue, ...]


def _clock(date_text: str | None, time_text: str | None, tz: ZoneInfo | None) -> datetime | None:
    if not date_text or not time_text:
        return None
    d = re.sub(r"\D", "", date_text)
    t = re.sub(r"\D", "", time_text)
    if len(d) == 7:  # some meters prefix the year with a century digit: 1YYMMDD
        d = d[1:]
    if len(d) != 6 or len(t) not in (4, 6):
        return None
    try:
        naive = datetime(2000 + int(d[:2]), int(d[2:4]), int(d[4:6]), int(t[:2]), int(t[2:4]), int(t[4:6] or 0))
    except ValueError:
        return None
    if tz is None:
        return naive.replace(tzinfo=UTC)
    return naive.replace(tzinfo=tz).astimezone(UTC)


def _base_value(value: str, unit: str) -> tuple[float, str] | None:
    if not unit or not _NUMBER_RE.fullmatch(value):
        return None
    try:
        base, factor = normalize_unit(unit)
        return float(Decimal(value) * Decimal(repr(factor))), base
    except (ValueError, InvalidOperation):
        return None


def parse_readout(
    block: bytes, *, meter: str | None = None, ts: int | None = None, tz: ZoneInfo | None = None
) -> ParsedReadout:
    """Parse the data of a readout (with or without STX .. ETX BCC framing; the BCC is checked when present).

    Readings are the current values with a unit (historic ``*NN`` values and unitless codes are skipped), in base
    units, ``Source.IEC62056_21``, timestamped ``ts`` or else the meter clock or else now. The meter is named
    ``meter``, else the serial (``0-0:96.1.0`` / ``C.1.0``). Problems become issues (``bad_bcc``, ``bad_line``,
    ``no_end``, ``no_meter_id``), never exceptions.
    """
    raw = bytes(block)
    data = raw
    issues: list[Issue] = []
    if data[:1] == bytes([STX]):
        etx = data.find(bytes([ETX]), 1)
        if etx < 0 or etx + 1 >= len(data):
            issues.append(Issue("no_end", "readout without ETX and BCC (truncated)", meter, raw))
            data = data[1:]
        elif bcc(data[1 : etx + 1]) != data[etx + 1]:
            got, want = bcc(data[1 : etx + 1]), data[etx + 1]
            detail = f"BCC mismatch: block says {want:02X}, computed {got:02X}"
            return ParsedReadout(ReadingBatch(), None, None, (), (Issue("bad_bcc", detail, meter, raw),))
        else:
            data = data[1:etx]
    text = data.decode("ascii", errors="replace")
    if "!" not in text and not issues:
        issues.append(Issue("no_end", "readout without the closing '!'", meter, raw))
    text = text.split("!", 1)[0]
    datasets: list[DataSet] = []
    last = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            found = parse_data_line(line.strip())
        except ValueError as exc:
            issues.append(Issue("bad_line", str(exc), meter, raw))
            continue
        for ds in found:
            if ds.address:
                last = ds.address
            datasets.append(DataSet(ds.address or last, ds.values))
    by_addr = {ds.address: ds for ds in datasets}

    def first(*names: str) -> str | None:
        for name in names:
            ds = by_addr.get(name)
            if ds is not None and ds.values and ds.values[0][0]:
                return ds.values[0][0]
        return None

    serial = first("0-0:96.1.0", "C.1.0", "96.1.0", "0-0:C.1.0")
    clock = _clock(first("0-0:0.9.2", "0.9.2"), first("0-0:0.9.1", "0.9.1"), tz)
    name = meter or serial
    if name is None:
        issues.append(Issue("no_meter_id", "no meter given and no 0-0:96.1.0 / C.1.0 serial in the readout", None, raw))
        return ParsedReadout(ReadingBatch(), serial, clock, tuple(datasets), tuple(issues))
    when = ts if ts is not None else int(clock.timestamp()) if clock is not None else int(time.time())
    obis: list[str] = []
    values: list[float] = []
    units: list[str] = []
    seen: set[str] = set()
    for ds in datasets:
        if not ds.values or "*" in ds.address or "&" in ds.address:
            continue  # historic values
        try:
            code = parse_obis(ds.address)
        except ValueError:
            continue
        parsed = _base_value(*ds.values[0])
        if parsed is None or code.c in (0, 96, 97) or str(code) in seen:
            continue
        seen.add(str(code))
        obis.append(str(code))
        values.append(parsed[0])
        units.append(parsed[1])
    batch = ReadingBatch.from_columns(
        name,
        np.array(obis, dtype=object),
        [when] * len(obis),
        values,
        unit=np.array(units, dtype=object),
        source=Source.IEC62056_21,
    )
    return ParsedReadout(batch, serial, clock, tuple(datasets), tuple(issues))


# -- sans-I/O state machines ---------------------------------------------------------------------------------------


class IecClient:
    """The client side of one mode C readout.

    ``send_sign_on()`` -> bytes; feed what arrives with ``receive_data``; ``next_event()`` gives the
    :class:`Identification`, then (after ``send_option_select``) the readout block as bytes (STX .. BCC, checked:
    FrameError on a bad BCC or an oversized block), or NEED_DATA. Noise before ``/`` or STX is skipped (counted in
    ``discarded``) up to a limit, then FrameError.
    """

    def __init__(self, address: str = "", *, max_baudrate: int = 19200, max_bytes: int = MAX_READOUT_BYTES) -> None:
        self.address = address
        self.max_baudrate = max_baudrate
        self.max_bytes = max_bytes
        self.state = "idle"  # idle -> identify -> option -> readout -> done
        self.identification: Identification | None = None
        self.baudrate = 300
        self.discarded = 0
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received and not yet part of an event (a partial answer)."""
        return len(self._buf)

    def send_sign_on(self) -> bytes:
        self.state = "identify"
        self._buf.clear()
        return build_sign_on(self.address)

    def send_option_select(self) -> bytes:
        """``ACK 0 Z 0``: the meter's offered rate, capped at ``max_baudrate``; sets ``baudrate`` to switch to."""
        if self.state != "option" or self.identification is None:
            raise ProtocolError(f"option select in state {self.state}")
        offered = self.identification.baud_char if self.identification.baud_char in BAUD_RATES else "0"
        choice = max((c for c, b in BAUD_RATES.items() if b <= min(BAUD_RATES[offered], self.max_baudrate)), key=int)
        self.baudrate = BAUD_RATES[choice]
        self.state = "readout"
        return build_option_select(choice)

    def receive_data(self, chunk: bytes) -> None:
        self._buf += chunk

    def next_event(self) -> Identification | bytes | None:
        if self.state == "identify":
            return self._identification()
        if self.state == "readout":
            return self._readout()
        return NEED_DATA

    def _skip_to(self, marker: int, what: str) -> bool:
        start = self._buf.find(bytes([marker]))
        if start < 0:
            self.discarded += len(self._buf)
            self._buf.clear()
        elif start:
            self.discarded += start
            del self._buf[:start]
        if self.discarded > self.max_bytes:
            raise FrameError(f"no {what} in {self.discarded} bytes of noise")
        return start >= 0

    def _identification(self) -> Identification | None:
        while self._skip_to(ord("/"), "identification"):
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > _MAX_LINE:
                    self._drop(1)
                    continue
                return NEED_DATA
            line = bytes(self._buf[: end + 1])
            try:
                ident = parse_identification(line)
            except FrameError:
                if line.startswith(b"/?"):  # our own sign-on echoed back (a half-duplex optical head)
                    del self._buf[: end + 1]
                    continue
                self._drop(1)
                continue
            del self._buf[: end + 1]
            self.identification = ident
            self.state = "option"
            return ident
        return NEED_DATA

    def _readout(self) -> bytes | None:
        if not self._skip_to(STX, "readout (STX)"):
            return NEED_DATA
        etx = self._buf.find(bytes([ETX]))
        if etx < 0 or etx + 1 >= len(self._buf):
            if len(self._buf) > self.max_bytes:
                raise FrameError(f"readout longer than {self.max_bytes} bytes without ETX")
            return NEED_DATA
        block = bytes(self._buf[: etx + 2])
        del self._buf[: etx + 2]
        if bcc(block[1 : etx + 1]) != block[etx + 1]:
            raise FrameError(
                f"readout BCC mismatch: block says {block[etx + 1]:02X}, computed {bcc(block[1 : etx + 1]):02X}"
            )
        self.state = "done"
        return block

    def _drop(self, n: int) -> None:
        self.discarded += n
        del self._buf[:n]


class IecMeter:
    """The meter side: ``receive_data``, then ``next_event()`` -> :class:`SignOn` / :class:`OptionSelect` /
    :class:`Break` / NEED_DATA. Lines that are none of these are skipped (``discarded``); the caller answers with
    :func:`build_identification` and :func:`build_readout`, and resets with :meth:`reset` after silence."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0

    def reset(self) -> None:
        self._buf.clear()

    def receive_data(self, chunk: bytes) -> None:
        self._buf += chunk
        if len(self._buf) > 4 * _MAX_LINE:
            self.discarded += len(self._buf) - _MAX_LINE
            del self._buf[:-_MAX_LINE]

    def next_event(self) -> SignOn | OptionSelect | Break | None:
        while self._buf:
            if self._buf[0] == SOH:
                if len(self._buf) < 5:
                    return NEED_DATA
                frame = bytes(self._buf[:5])
                del self._buf[:5]
                if frame[1:4] == b"B0\x03" and bcc(frame[1:4]) == frame[4]:
                    return Break()
                self.discarded += 5
                continue
            end = self._buf.find(b"\n")
            if end < 0:
                return NEED_DATA
            line = bytes(self._buf[: end + 1]).rstrip(b"\r\n")
            del self._buf[: end + 1]
            m = re.fullmatch(rb".*/\?([ -~]{0,32})!", line)
            if m and b"!" not in m[1]:
                return SignOn(m[1].decode("ascii"))
            i = line.rfind(bytes([ACK]))
            if i >= 0 and len(line) - i == 4 and line[i + 2 : i + 3].decode("ascii", "replace") in BAUD_RATES:
                opt = line[i + 1 :].decode("ascii")
                return OptionSelect(opt[0], opt[1], opt[2])
            self.discarded += len(line)
        return NEED_DATA


# -- async client --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Readout:
    """One meter readout: identification line (without ``/``), serial, meter clock (aware UTC), readings, raw block."""

    identification: str
    serial: str | None
    clock: datetime | None
    readings: ReadingBatch
    raw: bytes
    manufacturer: str = ""
    baudrate: int = 300
    issues: tuple[Issue, ...] = field(default_factory=tuple)


async def read_iec62056_21(uri: MeterUri, *, timeout_s: float) -> Readout:
    """Sign on, identify, switch baud and read out one meter (``iec62056-21:///dev/ttyX`` or ``...+tcp://H:P``).

    URI parameters: ``address`` (device address for a bus of meters), ``max_baud`` (cap on the switched rate),
    ``tz`` (the meter clock's zone, default UTC), ``meter`` (the name in the readings; default the serial),
    plus the serial line settings of :func:`protocols.transport.serial_settings` (default 300 7E1).
    ``timeout_s`` bounds each wait for the meter. Errors name the URI: ConnectError, ReadTimeout, TransportError
    (the meter hung up), FrameError (bad BCC, noise), ProtocolError (an unusable answer).
    """
    tz: ZoneInfo | None = None
    if uri.params.get("tz"):
        try:
            tz = ZoneInfo(uri.params["tz"])
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"meter URI {uri.text!r}: unknown time zone {uri.params['tz']!r}") from None
    client = IecClient(uri.params.get("address", ""), max_baudrate=uri.int_param("max_baud", 19200))
    link = open_link(uri, timeout_s=timeout_s)
    async with link:
        try:
            await link.write(client.send_sign_on())
            ident = await _await_event(link, client, Identification)
            await link.write(client.send_option_select())
            if isinstance(link, SerialLink) and client.baudrate != link.settings[0]:
                baud, bits, parity, stop = link.settings
                if not link.is_pty:
                    await asyncio.sleep(6 * 10 / baud + 0.05)  # the ACK must leave at the old rate before switching
                await link.set_serial(client.baudrate, bits, parity, stop)
            block = await _await_event(link, client, bytes)
        except FrameError as exc:
            raise FrameError(f"{uri.text}: {exc}") from None
        except TransportError as exc:
            if client.state == "readout" and client.pending:
                raise FrameError(f"{uri.text}: readout truncated after {client.pending} bytes ({exc})") from None
            if client.state == "identify" and client.discarded:
                detail = f"{client.discarded} bytes of noise and no identification"
                raise FrameError(f"{uri.text}: {detail} ({exc})") from None
            raise
    parsed = parse_readout(block, meter=uri.params.get("meter") or None, tz=tz)
    if any(issue.code == "no_meter_id" for issue in parsed.issues):
        parsed = parse_readout(block, meter=ident.text, tz=tz)  # no serial in the readout: name it by its ident
    return Readout(
        identification=ident.text,
        serial=parsed.serial,
        clock=parsed.clock,
        readings=parsed.readings,
        raw=block,
        manufacturer=ident.manufacturer,
        baudrate=client.baudrate,
        issues=parsed.issues,
    )


_E = TypeVar("_E", Identification, bytes)


async def _await_event(link: Link, client: IecClient, kind: type[_E]) -> _E:
    while True:
        event = client.next_event()
        if isinstance(event, kind):
            return event
        if event is not NEED_DATA:
            raise ProtocolError(f"{link.peer}: unexpected {type(event).__name__} from the meter")
        client.receive_data(await link.read())
