"""``amiflow serve``: one supervised process running the ingest workers, poller, bridge, API and housekeeping."""
