"""``amiflow decode KIND [FILE or -] [--hex]``: decode a capture for an engineer (KIND one of protocols.decode.KINDS).

Prints the JSON of :func:`protocols.decode.decode_bytes`. Exit 0 when everything decoded, 1 when a frame is bad (its
issue is printed), 2 when the decoder is not available. ``--hex`` reads the input as hex text (spaces, colons and
newlines ignored; for ``sml`` also ``#`` comments and the ``1bh`` log style).
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from amiflow.errors import ConfigError
from amiflow.settings import Settings
from amiflow_app.command import Command
from protocols.decode import KINDS, decode_bytes
from protocols.sml import from_hex as sml_from_hex

__all__ = ["DECODE"]


def _from_hex(data: bytes, kind: str) -> bytes:
    if kind == "mbus":  # protocols.mbus reads hex text itself, one wireless frame a line
        return data
    if kind == "sml":  # annotated SML vectors and logs: comments, 1bh suffixes
        decoded = sml_from_hex(data)
        if decoded is None:
            raise ConfigError("--hex: the input is not hex text")
        return decoded
    text = re.sub(r"[\s:,]|0x", "", data.decode("ascii", errors="replace"))
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ConfigError("--hex: the input is not hex text") from None


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=KINDS, help="what the input holds")
    # the rest by hand: argparse does not match an optional FILE that follows --hex
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="FILE", help="the capture (default - for stdin)")
    p.add_argument("--hex", action="store_true", help="the input is hex text")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    rest = [a for a in args.rest if a != "--hex"]
    args.hex = args.hex or len(rest) < len(args.rest)
    if len(rest) > 1 or (rest and rest[0].startswith("-") and rest[0] != "-"):
        raise ConfigError(f"decode {args.kind}: expected one FILE or - (stdin), got {' '.join(args.rest)}")
    args.file = rest[0] if rest else "-"
    if args.file == "-":
        data = sys.stdin.buffer.read()
        name = "stdin"
    else:
        try:
            with open(args.file, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise ConfigError(f"decode: cannot read {args.file}: {exc.strerror or exc}") from None
        name = args.file.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if args.hex:
        data = _from_hex(data, args.kind)
    try:
        result = decode_bytes(args.kind, data, name=name)
    except LookupError as exc:
        print(f"decode {args.kind}: not built yet ({exc})", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 1 if any(i.get("severity") != "info" for i in result["issues"]) else 0  # info: unusual, decoded


DECODE = Command(
    help="decode a captured P1 telegram, IEC 62056-21 readout, HDLC frame, DLMS APDU, Modbus map, SML or M-Bus data",
    add_arguments=_add_arguments,
    run=_run,
)
