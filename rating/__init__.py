"""amiflow rating package."""
