"""``amiflow demo``: the whole head-end on simulated meters, from MQTT and polled meters to bills and disconnects."""
