"""amiflow's meter protocols: sans-I/O codecs, each with a thin asyncio client over :mod:`protocols.transport`.

One subpackage or module per protocol family; each exports its public API (a sorted ``__all__``):

- :mod:`protocols.transport`: byte links to meters (TCP, serial, in-memory), bus lock, circuit breaker, retries;
- :mod:`protocols.dlms`: DLMS/COSEM (HDLC, TCP wrapper, A-XDR, association, xDLMS, interface classes, client);
- :mod:`protocols.modbus`: Modbus register maps, value codecs and the pymodbus client;
- :mod:`protocols.iec62056_21`: IEC 62056-21 mode C readout; :mod:`protocols.p1`: DSMR P1 telegrams;
- :mod:`protocols.mqtt_payloads`: the MQTT payloads amiflow ingests;
- :mod:`protocols.decode`: captures of any of these decoded to JSON for an engineer (``amiflow decode``).

Importing this package imports none of them: take the one you need (``from protocols.dlms import DlmsClient``).
Everything here sits on the core (:mod:`amiflow`) and nothing above it.
"""

from __future__ import annotations

__all__ = ["decode", "dlms", "iec62056_21", "modbus", "mqtt_payloads", "p1", "transport"]
