"""The shape of one ``amiflow`` subcommand, so packages can define commands without importing the CLI."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from amiflow.settings import Settings

__all__ = ["Command"]


@dataclass(frozen=True, slots=True)
class Command:
    """``add_arguments`` fills the subparser; ``run`` returns the exit code (0 = success).

    ``run`` raises :class:`~amiflow.errors.AmiflowError` for expected failures: the CLI prints its message as one
    line and exits 1. Anything else is a bug and shows a traceback.
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Settings], int]
