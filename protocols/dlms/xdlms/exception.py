"""EXCEPTION-Response (Green Book clause 9.4): the meter could not even try the service.

::

    Exception-Response   D8 <state-error> <service-error choice> <value>    (value: u32, invocation-counter-error only)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .fields import byte_at, u32_at

__all__ = ["ExceptionResponse"]


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """EXCEPTION-Response: state-error (1 service-not-allowed, 2 service-unknown) and service-error."""

    state_error: int
    service_error: int
    value: int = 0

    STATE: ClassVar[dict[int, str]] = {1: "service-not-allowed", 2: "service-unknown"}
    SERVICE: ClassVar[dict[int, str]] = {
        1: "operation-not-possible",
        2: "service-not-supported",
        3: "other-reason",
        4: "pdu-too-long",
        5: "deciphering-error",
        6: "invocation-counter-error",
    }

    def to_bytes(self) -> bytes:
        out = bytes((0xD8, self.state_error, self.service_error))
        return out + (self.value.to_bytes(4, "big") if self.service_error == 6 else b"")

    @classmethod
    def from_bytes(cls, data: bytes) -> ExceptionResponse:
        service = byte_at(data, 2)
        value = u32_at(data, 3) if service == 6 else 0
        return cls(byte_at(data, 1), service, value)

    def describe(self) -> str:
        state = self.STATE.get(self.state_error, f"state-error {self.state_error}")
        return f"{state}, {self.SERVICE.get(self.service_error, f'service-error {self.service_error}')}"
