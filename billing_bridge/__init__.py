"""amiflow billing_bridge package."""
