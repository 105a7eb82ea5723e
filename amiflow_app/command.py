"""The shape of one ``amiflow`` subcommand, so packages can define commands without importing the CLI."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from amiflow.errors import ConfigError
from amiflow.settings import Settings

__all__ = ["Command", "read_csv_file"]


@dataclass(frozen=True, slots=True)
class Command:
    """``add_arguments`` fills the subparser; ``run`` returns the exit code (0 = success).

    ``run`` raises :class:`~amiflow.errors.AmiflowError` for expected failures: the CLI prints its message as one
    line and exits 1. Anything else is a bug and shows a traceback.
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Settings], int]


def read_csv_file(path: Path) -> str:
    """The text of a CSV the user named; one line saying why it cannot be read, or which byte is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): save the CSV as UTF-8") from None
