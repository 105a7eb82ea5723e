"""DLMS/COSEM for amiflow: amiflow's own sans-I/O codecs and an asyncio client.

Layers (each module starts with its frame layout and the clause it implements):

- :mod:`.hdlc` HDLC framing and link state (IEC 62056-46), :mod:`.wrapper` the TCP wrapper (IEC 62056-47);
- :mod:`.axdr` A-XDR data, :mod:`.acse` AARQ/AARE/RLRQ/RLRE, :mod:`.xdlms` GET/SET/ACTION/exception APDUs;
- :mod:`.cosem` interface-class values (date-time, scaler_unit, disconnect control), :mod:`.profile_generic`
  profile generic (capture objects, range access, the buffer) and :mod:`.profile` its vectorised decoder;
- :mod:`.association` the client association state machine, :mod:`.server` the server side (the simulator's);
- :mod:`.session` :class:`~protocols.dlms.session.DlmsSession` (the I/O shell: link, association, GET/SET/ACTION),
  :mod:`.client` :class:`DlmsClient` (the meter operations on top);
- :mod:`.describe` ``describe_hdlc`` / ``describe_apdu`` for ``amiflow decode``.

No code here imports gurux or dlms-cosem (their licenses forbid it in the product).
"""

from __future__ import annotations

from .client import DlmsClient, MeterEvent
from .cosem import ControlMode, ControlState, DateTime, Deviation, ScalerUnit
from .describe import describe_apdu, describe_hdlc

__all__ = [
    "ControlMode",
    "ControlState",
    "DateTime",
    "Deviation",
    "DlmsClient",
    "MeterEvent",
    "ScalerUnit",
    "describe_apdu",
    "describe_hdlc",
]
