"""amiflow simulators package."""
