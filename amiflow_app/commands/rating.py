"""TEMPORARY re-export while the rating commands move here (issue 11)."""

from rating.billing_run import BILL_RUN
from rating.cli import RATE, TARIFFS_IMPORT, TARIFFS_LIST, TARIFFS_SHOW
from rating.vee.cli import VEE_RUN

__all__ = ["BILL_RUN", "RATE", "TARIFFS_IMPORT", "TARIFFS_LIST", "TARIFFS_SHOW", "VEE_RUN"]
