"""The M-Bus simulator's encrypted slaves (OMS mode 5): a telegram decodes with the slave's key, a multi-telegram
readout keeps its DIF 1F after the fillers, and without the key only the header is readable."""

from __future__ import annotations

from protocols.mbus import KeyRing, parse_application
from protocols.mbus.link import LongFrame, ShortFrame, parse_frame
from simulators.mbus_devices import SimSlave, sim_key


def _telegram(slave: SimSlave, fcb: bool) -> LongFrame:
    answer = slave.answer(ShortFrame(0x5B | (0x20 if fcb else 0) | 0x10, slave.address), 1_790_000_000)
    assert answer is not None
    frame = parse_frame(answer)
    assert isinstance(frame, LongFrame)
    return frame


def test_encrypted_heat_meter_decodes_with_its_key_only() -> None:
    key = sim_key(1, "12345678")
    slave = SimSlave("heat", 7, "12345678", key=key)
    assert slave.answer(ShortFrame(0x40, 7), 0) == b"\xe5"
    first, second = _telegram(slave, True), _telegram(slave, False)
    plain = SimSlave("heat", 7, "12345678")
    plain.answer(ShortFrame(0x40, 7), 0)
    clear = parse_application(_telegram(plain, True).ci, _telegram(plain, True).data)
    good = parse_application(first.ci, first.data, keys=KeyRing(default=key))
    assert good.decrypted and good.more_follows and not good.issues and not good.manufacturer_data
    assert [(r.quantity, r.value) for r in good.records] == [(r.quantity, r.value) for r in clear.records]
    assert parse_application(second.ci, second.data, keys=KeyRing({"12345678": key})).records
    locked = parse_application(first.ci, first.data)
    assert [i.code for i in locked.issues] == ["encrypted"] and locked.header is not None
    assert locked.header.ident == "12345678" and locked.header.security_mode == 5
    wrong = parse_application(first.ci, first.data, keys=KeyRing(default=sim_key(2, "12345678")))
    assert [i.code for i in wrong.issues] == ["bad_key"]
    assert sim_key(1, "12345678") != sim_key(1, "12345679")
