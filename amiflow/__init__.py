"""amiflow: an open-source AMI head-end and metering service."""

__version__ = "0.1.0"
