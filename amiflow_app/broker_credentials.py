"""MQTT credentials for a fleet in Mosquitto's password-file format (``amiflow meters credentials``).

Each line of a Mosquitto 2.x password file is ``username:$7$<iterations>$<base64 salt>$<base64 hash>``: the hash is
PBKDF2-HMAC-SHA512 of the password over the 12 raw salt bytes, 101 iterations, 64 bytes, exactly as
``mosquitto_passwd`` writes it (mosquitto 2.0 ``src/password_mosq.h``: ``pw_sha512_pbkdf2 = 7``, ``SALT_LEN 12``,
``PW_DEFAULT_ITERATIONS 101``; the broker reads the count from each entry). The generated passwords are 192 random
bits, so the low count gives an attacker holding the file nothing to use. With deploy/mosquitto/acl.conf the
username is the meter id, so a meter may publish only under ``ami/v1/<its id>/`` and read only its own commands.

The plain passwords live in a secrets file of ``username:password`` lines (the plain form ``mosquitto_passwd -U``
takes): a password already there is kept, so running the command again after new meters are registered hands the
existing devices nothing new; only the salts change. A meter id that could not be a safe username (``:``, ``/``,
``+``, ``#``, white space or control characters: the ACL's ``%u`` would widen into a wildcard or another topic
level) gets no credentials and is reported.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from amiflow.errors import ConfigError

__all__ = [
    "SERVICE_USERS",
    "FleetCredentials",
    "check_password",
    "fleet_credentials",
    "hash_password",
    "password_file",
    "read_secrets",
    "write_private",
]

SERVICE_USERS = ("amiflow-ingest", "amiflow-bridge")  # the head-end's own accounts in deploy/mosquitto/acl.conf
_ITERATIONS = 101
_SALT_BYTES = 12
_SAFE = re.compile(r"[^\s:/+#\x00-\x1f\x7f]{1,64}")


@dataclass(frozen=True, slots=True)
class FleetCredentials:
    """Every username with its password (kept or new), which ones are new, and the meter ids left out with why."""

    passwords: dict[str, str]
    new: tuple[str, ...]
    refused: tuple[tuple[str, str], ...]


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = _ITERATIONS) -> str:
    """The ``$7$`` entry of ``password`` (a fresh random salt unless given)."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, entry: str) -> bool:
    """True when ``entry`` (a ``$7$`` hash) is of ``password``."""
    parts = entry.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    salt, expected = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2])), expected)


def read_secrets(path: Path) -> dict[str, str]:
    """The ``username:password`` lines of ``path`` (empty when it does not exist yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ConfigError(f"{path}:{number}: expected username:password")
        found[user] = password
    return found


def fleet_credentials(usernames: Iterable[str], known: dict[str, str]) -> FleetCredentials:
    """A password for each of ``usernames``: the one in ``known``, else a new random one (32 URL-safe characters)."""
    passwords: dict[str, str] = {}
    new: list[str] = []
    refused: list[tuple[str, str]] = []
    for user in usernames:
        if not _SAFE.fullmatch(user):
            refused.append((user, "not a safe MQTT username (no : / + # spaces or control characters, 1-64 long)"))
            continue
        if user in passwords:
            continue
        if user not in known:
            new.append(user)
        passwords[user] = known.get(user) or secrets.token_urlsafe(24)
    return FleetCredentials(passwords, tuple(new), tuple(refused))


def password_file(passwords: dict[str, str]) -> str:
    """The Mosquitto password file of ``passwords`` (sorted by username)."""
    return "".join(f"{user}:{hash_password(pw)}\n" for user, pw in sorted(passwords.items()))


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (mode 0600), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write ({exc.strerror})") from None
