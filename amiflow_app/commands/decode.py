"""TEMPORARY re-export while the decode command moves here (issue 11)."""

from protocols.decode import DECODE

__all__ = ["DECODE"]
