"""amiflow protocols package."""
