"""amiflow ingest package."""
