"""CIM EndDeviceControls carry real IEC 61968-9 EndDeviceControlType codes (type.domain.subdomain.eventOrAction):
an electric meter (3), its remote connect/disconnect switch (RCDSwitch, 31), no subdomain (0), and the switch
command: Disconnect 23, Connect 18, ArmForClosure 5 (IEC 61968-9:2013 Annex E)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from billing_bridge.cim import (
    ARM_FOR_CLOSURE,
    CONNECT,
    CONTROL_KINDS,
    DISCONNECT,
    EndDeviceDomain,
    EndDeviceEventOrAction,
    EndDeviceSubdomain,
    EndDeviceType,
    notice_to_end_device_controls,
    parse_control_type,
)

_NS = {"edc": "http://iec.ch/TC57/2011/EndDeviceControls#"}


def test_the_codes_are_the_standards() -> None:
    assert (DISCONNECT, CONNECT, ARM_FOR_CLOSURE) == ("3.31.0.23", "3.31.0.18", "3.31.0.5")
    meter, switch, na = EndDeviceType.ELECTRIC_METER, EndDeviceDomain.RCD_SWITCH, EndDeviceSubdomain.NOT_APPLICABLE
    assert parse_control_type(DISCONNECT) == (meter, switch, na, EndDeviceEventOrAction.DISCONNECT)
    assert parse_control_type(ARM_FOR_CLOSURE)[3] is EndDeviceEventOrAction.ARM_FOR_CLOSURE
    for code, _ in CONTROL_KINDS.values():
        parse_control_type(code)  # every code amiflow sends is made of the standard's enumerations


@pytest.mark.parametrize("bad", ["3.31.0", "3.31.0.99", "x.31.0.23", "3.1.0.23"])
def test_codes_outside_the_scheme_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_control_type(bad)


def _type_of(kind: str, **payload: object) -> tuple[str, str]:
    xml = notice_to_end_device_controls(kind, {"meter": "M1", "account": "A1", **payload}, "notice:k")
    assert xml is not None
    edc = ET.fromstring(xml).find(".//edc:EndDeviceControl", _NS)
    assert edc is not None
    ref = edc.find("edc:EndDeviceControlType", _NS)
    reason = edc.find("edc:reason", _NS)
    assert ref is not None and reason is not None
    return ref.attrib["ref"], str(reason.text)


def test_notices_map_to_disconnect_connect_and_arm() -> None:
    assert _type_of("disconnect_scheduled", scheduled_at="2026-11-02T08:00:00Z") == (
        "3.31.0.23", "amiflow:disconnect_scheduled/scheduled",
    )  # fmt: skip
    assert _type_of("disconnected", relay="disconnected") == ("3.31.0.23", "amiflow:disconnected/executed")
    assert _type_of("reconnected", relay="connected", customer_action_required=False)[0] == "3.31.0.18"
    # the relay is armed: the customer's button closes it, so the control is ArmForClosure, not Connect
    assert _type_of("reconnected", relay="armed", customer_action_required=True)[0] == "3.31.0.5"
    assert notice_to_end_device_controls("payment_reminder", {"meter": "M1"}, "k") is None
