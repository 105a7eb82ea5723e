"""xDLMS service APDUs with logical-name referencing (Green Book clause 9.4 / IEC 62056-5-3), A-XDR encoded.

- :mod:`.get` GET-Request / GET-Response (C0 / C4): normal, next, with-list, with-datablock;
- :mod:`.set` SET-Request / SET-Response (C1 / C5): normal and in blocks;
- :mod:`.action` ACTION-Request / ACTION-Response (C3 / C7); :mod:`.exception` EXCEPTION-Response (D8);
- :mod:`.fields` the descriptor and access-selection fields they share, :mod:`.results` their result codes;
- :mod:`.apdu` :func:`parse_xdlms`, any of them from its bytes.

``iid`` is the invoke-id-and-priority byte (bits 0-3 invoke id, bit 6 confirmed, bit 7 high priority). ``Data`` is
kept as its A-XDR bytes (``data``); decode it with :func:`protocols.dlms.axdr.decode` or the profile fast path.
"""

from __future__ import annotations

from .action import ActionRequest, ActionResponse
from .apdu import Apdu, parse_xdlms
from .exception import ExceptionResponse
from .fields import AccessSelection, AttributeDescriptor
from .get import GetRequest, GetResponse
from .results import ActionResult, DataAccessResult, result_name
from .set import SetRequest, SetResponse

__all__ = [
    "AccessSelection",
    "ActionRequest",
    "ActionResponse",
    "ActionResult",
    "Apdu",
    "AttributeDescriptor",
    "DataAccessResult",
    "ExceptionResponse",
    "GetRequest",
    "GetResponse",
    "SetRequest",
    "SetResponse",
    "parse_xdlms",
    "result_name",
]
