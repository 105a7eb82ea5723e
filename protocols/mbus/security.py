"""OMS security mode 5 (EN 13757-7 clause 9.4 / OMS Vol. 2 annex N): AES-128-CBC with an IV from the header.

``IV = M(2) A(6) ACC x 8``: the manufacturer, ident number, version and medium of the sender (the long TPL header's
when there is one, else the link layer's), then the access number eight times. The first N x 16 bytes after the
TPL header are encrypted (N = bits 4-7 of the config field); the rest of the telegram is plain. A correct key
gives plain text that starts with the two verification bytes ``2F 2F``.

Keys are per meter. :class:`KeyRing` maps an ident number (8 digits, or ``MFR:ident``) to its 16-byte key, and may
hold a ``default`` key for whatever ident answers (a wired meter read by its primary address: the registry knows
the meter's key, not yet the ident it reports); its ``repr`` shows how many keys it holds, never a key, and nothing
here logs. A key that does not decrypt is reported without the key (``bad_key``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from amiflow.errors import ConfigError

from .header import DeviceHeader

__all__ = ["KeyRing", "decrypt_mode5", "encrypt_mode5", "mode5_iv"]


def mode5_iv(header: DeviceHeader) -> bytes:
    return header.address + bytes((header.access,)) * 8


def decrypt_mode5(key: bytes, header: DeviceHeader, data: bytes) -> bytes:
    """The plain text of the encrypted blocks of ``data``, with the unencrypted rest appended."""
    n = header.encrypted_blocks * 16
    if n == 0 or n > len(data):
        n = len(data) - len(data) % 16
    decryptor = Cipher(algorithms.AES(key), modes.CBC(mode5_iv(header))).decryptor()
    return decryptor.update(bytes(data[:n])) + decryptor.finalize() + bytes(data[n:])


def encrypt_mode5(key: bytes, header: DeviceHeader, plain: bytes) -> bytes:
    """Encrypt ``plain`` (which should start with 2F 2F) padded with 2F fillers to whole blocks."""
    padded = bytes(plain) + b"\x2f" * (-len(plain) % 16)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(mode5_iv(header))).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


class KeyRing:
    """Per-meter AES keys: ``KeyRing({"12345678": "00112233..."})``; keys by ``MFR:ident`` win over bare idents,
    and both over the ``default`` key."""

    def __init__(
        self,
        keys: Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]] = (),
        *,
        default: bytes | str | None = None,
    ) -> None:
        self._keys: dict[str, bytes] = {}
        items = keys.items() if isinstance(keys, Mapping) else keys
        for name, key in items:
            self.add(name, key)
        self._default = None if default is None else _raw("the default", default)

    def add(self, name: str, key: bytes | str) -> None:
        self._keys[name.upper()] = _raw(name, key)

    def key_for(self, header: DeviceHeader) -> bytes | None:
        found = self._keys.get(f"{header.manufacturer}:{header.ident}") or self._keys.get(header.ident)
        return found or self._default

    def __len__(self) -> int:
        return len(self._keys) + (self._default is not None)

    def __repr__(self) -> str:
        return f"KeyRing({len(self._keys)} keys{', a default key' if self._default is not None else ''})"


def _raw(name: str, key: bytes | str) -> bytes:
    try:
        raw = bytes.fromhex(key) if isinstance(key, str) else bytes(key)
    except ValueError:
        raise ConfigError(f"M-Bus key for {name}: expected 32 hex digits") from None
    if len(raw) != 16:
        raise ConfigError(f"M-Bus key for {name}: expected 16 bytes (32 hex digits), got {len(raw)} bytes")
    return raw
