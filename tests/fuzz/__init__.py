"""Fuzz targets of every decoder that takes bytes from outside, shared by the hypothesis tests in this folder and by
the long runs of ``benchmarks/fuzz.py``."""

from __future__ import annotations

from tests.fuzz.codec_targets import CODEC_TARGETS, Target
from tests.fuzz.document_targets import DOCUMENT_TARGETS

__all__ = ["TARGETS", "Target"]

TARGETS: tuple[Target, ...] = CODEC_TARGETS + DOCUMENT_TARGETS
