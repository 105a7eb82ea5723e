"""amiflow: an open-source AMI head-end and metering service.

This package is the core every other package stands on: settings (:mod:`amiflow.settings`), the one error tree
(:mod:`amiflow.errors`), the shared reading types (:mod:`amiflow.types`), meter URIs (:mod:`amiflow.uri`) and the
database layer (:mod:`amiflow.db`). It imports no other amiflow package; the application shell is ``amiflow_app``.
"""

from amiflow.errors import AmiflowError, ConfigError
from amiflow.settings import Settings, load_settings
from amiflow.types import QualityFlag, ReadingBatch, Source

__version__ = "0.1.0"

__all__ = [
    "AmiflowError",
    "ConfigError",
    "QualityFlag",
    "ReadingBatch",
    "Settings",
    "Source",
    "__version__",
    "load_settings",
]
