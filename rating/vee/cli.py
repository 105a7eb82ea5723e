"""``amiflow vee run --period YYYY-MM [--cycle C]``: validate and estimate a month for all meters, store the results.

The same block machinery as the billing run (rating.billing_run) with ``kind="vee"``: per block of meters the
intervals are read, validated and estimated, and the pre/post versions of every estimated or flagged interval
(``amiflow.vee_intervals``, view ``amiflow.v_vee_intervals``) and the per-meter summary (``amiflow.vee_results``)
replace the previous results of that month, in one transaction per block. Resumable like the billing run.
"""

from __future__ import annotations

import argparse

from amiflow.settings import Settings
from amiflow_app.command import Command

__all__ = ["VEE_RUN"]


def _add(parser: argparse.ArgumentParser) -> None:
    from rating.billing_run import add_run_arguments

    add_run_arguments(parser, billing=False)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from rating.billing_run import run_command

    return run_command(args, settings, "vee")


VEE_RUN = Command(
    help="validate and estimate a month's intervals of all meters (pre/post versions stored)",
    add_arguments=_add,
    run=_run,
)
