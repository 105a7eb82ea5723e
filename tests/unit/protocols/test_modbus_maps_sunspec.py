"""Modbus pure layer: maps as data, word order, SunSpec values and scale factors, request coalescing within
vendor limits, and the SunSpec chain walk over a synthetic register image (no network)."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from amiflow.errors import ConfigError, FrameError, ProtocolError
from amiflow.types import Source
from amiflow.uri import parse_meter_uri
from protocols.modbus import (
    ModbusMeterClient,
    Register,
    RegisterMap,
    decode_block,
    decode_value,
    encode_value,
    load_map,
    plan_reads,
    read_map_csv,
    sunspec_model,
)

F32 = Register("x", 0, 4, "float32", 2)


# -- maps as data ----------------------------------------------------------------------------------------------


def test_eastron_maps_load_with_addresses_types_and_obis() -> None:
    sdm630 = load_map("sdm630")
    by = sdm630.by_name()
    assert len(sdm630.registers) == 104
    imp = by["import_energy_active"]
    assert (imp.address, imp.function_code, imp.type, imp.count, imp.unit) == (0x48, 4, "float32", 2, "kWh")
    assert (imp.obis, imp.obis_unit, imp.obis_factor) == ("1-0:1.8.0", "Wh", 1000.0)
    assert by["export_energy_active"].address == 0x4A and by["export_energy_active"].obis == "1-0:2.8.0"
    assert by["l2_voltage"].obis == "1-0:52.7.0" and by["l3_current"].obis == "1-0:71.7.0"
    assert by["frequency"].obis == "1-0:14.7.0" and by["total_power_active"].obis_unit == "W"
    assert by["serial_number"].function_code == 3 and by["serial_number"].type == "uint32"
    sdm120 = load_map("sdm120").by_name()
    assert sdm120["voltage"].obis == "1-0:32.7.0" and sdm120["import_energy_active"].address == 72
    assert load_map("sdm630").relay is None  # the real meter has no relay register


def test_breaker_extension_adds_a_writable_relay_register() -> None:
    m = load_map("sdm120+breaker")
    relay = m.relay
    assert relay is not None and relay.writable and relay.function_code == 3 and relay.address == 4096
    assert m.max_registers == 80 and m.even  # the Eastron limit wins in a union


def test_unknown_map_and_bad_csv_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown Modbus register map 'sdm999'"):
        load_map("sdm999")
    with pytest.raises(ConfigError, match="line 2"):
        read_map_csv("address,function_code,name,type\nzz,4,v,float32\n", "bad")
    with pytest.raises(ConfigError, match="unknown type"):
        read_map_csv("address,function_code,name,type\n0,4,v,float99\n", "bad")
    with pytest.raises(ConfigError, match="max_registers"):
        RegisterMap("big", (), max_registers=126)  # beyond the Modbus PDU limit
    with pytest.raises(ConfigError, match="word order"):
        read_map_csv("# word_order=middle\naddress,function_code,name,type\n0,4,v,float32\n", "bad")


def test_amiflow_csv_format_with_options_and_obis_column(tmp_path: Any) -> None:
    text = (
        "# word_order=little max_registers=60 even=false max_gap=0\n"
        "address,function_code,name,type,registers,unit,scale,obis,access,description\n"
        "0x10,3,energy,uint32,2,kWh,0.01,1-0:1.8.0,R,Import energy\n"
        "0x20,4,volts,int16,1,V,0.1,1-0:32.7.0,R,\n"
        "0x30,3,relay,uint16,1,,1,,RW,contactor\n"
    )
    path = tmp_path / "mymeter.csv"
    path.write_text(text)
    m = load_map(str(path))
    assert (m.name, m.word_order, m.max_registers, m.even, m.max_gap) == ("mymeter", "little", 60, False, 0)
    by = m.by_name()
    assert by["energy"].address == 16 and by["energy"].scale == 0.01 and by["energy"].obis_factor == 1000.0
    assert m.relay is not None and m.relay.address == 0x30
    with pytest.raises(ConfigError, match="cannot read"):
        load_map(str(tmp_path / "missing.csv"))


def test_sunspec_models_load_at_their_address_with_scale_factor_names() -> None:
    m203 = sunspec_model(203, 40070)
    by = m203.by_name()
    assert by["A"].address == 40072 and by["A"].scale_ref == "A_SF" and by["A"].type == "int16"
    assert by["TotWhImp"].address == 40070 + 46 and by["TotWhImp"].type == "acc32"
    assert by["TotWhImp"].obis == "1-0:1.8.0" and by["TotWhExp"].obis == "1-0:2.8.0"
    assert m203.sunspec and not m203.even and m203.max_registers == 125
    m213 = sunspec_model(213, 40070).by_name()
    assert m213["TotWhImp"].type == "float32" and m213["TotWhImp"].scale_ref is None
    common = sunspec_model(1, 40002).by_name()
    assert common["SN"].type == "string" and common["SN"].count == 16 and common["Mn"].address == 40004
    with pytest.raises(ConfigError, match="model 999"):
        sunspec_model(999, 0)


# -- values ----------------------------------------------------------------------------------------------------


def test_float32_word_orders_are_distinct_and_decode_known_bytes() -> None:
    hi, lo = struct.unpack(">HH", struct.pack(">f", 230.5))
    assert decode_value(F32, [hi, lo], word_order="big") == 230.5
    assert decode_value(F32, [lo, hi], word_order="little") == 230.5
    assert decode_value(F32, [lo, hi], word_order="big") != 230.5
    assert encode_value(F32, 230.5, word_order="little") == [lo, hi]
    assert decode_value(F32, [0x7FC0, 0x0000]) is None  # NaN: not implemented
    with pytest.raises(FrameError):
        decode_value(F32, [1])


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(["big", "little"]))
def test_float32_round_trip(value: float, order: str) -> None:
    decoded = decode_value(F32, encode_value(F32, value, word_order=order), word_order=order)
    assert decoded is not None and np.float32(decoded) == np.float32(value)  # the same float32 comes back
    assert len(repr(decoded)) <= len(repr(value))  # as its shortest decimal


def test_float32_decodes_to_the_decimal_the_meter_means() -> None:
    assert decode_value(F32, encode_value(F32, 230.8)) == 230.8  # not 230.8000030517578
    assert decode_value(F32, encode_value(F32, 149277.84)) == 149277.84
    assert decode_value(F32, [0x7F80, 0x0000]) is None  # +inf is no measurement


@given(st.integers(0, 0xFFFF_FFFE), st.sampled_from(["big", "little"]))
def test_uint32_round_trip(value: int, order: str) -> None:
    reg = Register("u", 0, 3, "uint32", 2)
    assert decode_value(reg, encode_value(reg, value, word_order=order), word_order=order) == value


def test_sunspec_not_implemented_sentinels() -> None:
    i16, u16 = Register("a", 0, 3, "int16", 1), Register("b", 0, 3, "uint16", 1)
    acc, sf = Register("c", 0, 3, "acc32", 2), Register("d", 0, 3, "sunssf", 1)
    assert decode_value(i16, [0x8000], sunspec=True) is None
    assert decode_value(i16, [0x8000], sunspec=False) == -32768.0  # only SunSpec reserves the pattern
    assert decode_value(i16, [0xFFFE], sunspec=True) == -2.0
    assert decode_value(u16, [0xFFFF], sunspec=True) is None
    assert decode_value(acc, [0, 0], sunspec=True) is None
    assert decode_value(acc, [0x0001, 0x0002], sunspec=True) == 65538.0
    assert decode_value(sf, [0x8000], sunspec=True) is None and decode_value(sf, [0xFFFD], sunspec=True) == -3.0
    assert encode_value(i16, None, sunspec=True) == [0x8000] and encode_value(acc, None, sunspec=True) == [0, 0]


def test_scale_factors_apply_and_a_missing_factor_leaves_the_value_out() -> None:
    m = sunspec_model(203, 40070)
    by = m.by_name()
    image = [0] * 107
    image[by["A"].address - 40070] = 1234  # 12.34 A with A_SF -2
    image[by["A_SF"].address - 40070] = 0xFFFE
    image[by["W"].address - 40070] = 0xFFF6  # -10 W * 10^1
    image[by["W_SF"].address - 40070] = 1
    image[by["PhVphA"].address - 40070] = 2305
    image[by["V_SF"].address - 40070] = 0x8000  # not implemented -> the voltage cannot be scaled
    acc = by["TotWhImp"].address - 40070
    image[acc : acc + 2] = [0x0001, 0x86A0]  # 100000 Wh * 10^0
    out = decode_block(m, {(3, 40070): image})
    assert out["A"] == 12.34  # exactly the decimal the meter means
    assert out["W"] == -100.0 and out["TotWhImp"] == 100000.0
    assert out["PhVphA"] is None
    assert out["TotWhExp"] is None  # acc32 0


# -- coalescing ------------------------------------------------------------------------------------------------


def _covers(requests: list[Any], regs: list[Register]) -> None:
    for r in regs:
        assert any(
            q.function_code == r.function_code and q.address <= r.address and r.end <= q.address + q.count
            for q in requests
        ), r.name


@pytest.mark.parametrize("limit", [2, 8, 40, 80])
def test_eastron_requests_are_even_within_limit_and_cover_every_register(limit: int) -> None:
    m = load_map("sdm630")
    requests = plan_reads(m.registers, max_registers=limit, even=True, max_gap=m.max_gap)
    for q in requests:
        assert q.count % 2 == 0 and q.address % 2 == 0 and 0 < q.count <= limit
    _covers(requests, list(m.registers))
    fc4 = [q for q in requests if q.function_code == 4]
    if limit == 80:
        assert len(fc4) == 4  # 0-79, 80-107, 200-269, 334-381: few requests, never one per register


def test_coalescing_respects_the_gap_and_never_mixes_function_codes() -> None:
    regs = [Register("a", 0, 4, "float32", 2), Register("b", 10, 4, "float32", 2), Register("c", 2, 3, "float32", 2)]
    assert [(q.function_code, q.address, q.count) for q in plan_reads(regs, max_gap=16)] == [(3, 2, 2), (4, 0, 12)]
    assert [(q.address, q.count) for q in plan_reads(regs, max_gap=4) if q.function_code == 4] == [(0, 2), (10, 2)]
    odd = [Register("u", 3, 3, "uint16", 1)]
    assert [(q.address, q.count) for q in plan_reads(odd, even=True)] == [(2, 2)]
    assert [(q.address, q.count) for q in plan_reads(odd, even=False)] == [(3, 1)]
    with pytest.raises(ConfigError):
        plan_reads([Register("s", 0, 3, "string", 100)], max_registers=80)


def test_sunspec_meter_model_is_split_at_the_pdu_limit() -> None:
    m = sunspec_model(213, 40070)  # 126 registers incl. ID/L: one more than a PDU holds
    requests = plan_reads(m.registers, max_registers=m.max_registers, even=m.even, max_gap=m.max_gap)
    assert all(q.count <= 125 for q in requests) and len(requests) == 2
    _covers(requests, list(m.registers))


# -- SunSpec chain walk over a synthetic register image -----------------------------------------------------------


class _ImageClient(ModbusMeterClient):
    """The client's real walk and decoding, with reads answered from a dict (address -> word)."""

    def __init__(self, image: dict[int, int], map_name: str | None = None) -> None:
        super().__init__(parse_meter_uri("modbus+tcp://127.0.0.1:1502?unit=1"), map_name=map_name)
        self.image = image
        self.reads: list[tuple[int, int, int]] = []

    async def read_registers(self, function_code: int, address: int, count: int) -> list[int]:
        self.reads.append((function_code, address, count))
        if any(a not in self.image for a in range(address, address + count)):
            raise ProtocolError(f"FC{function_code} {address}+{count} refused: exception 2 (illegal data address)")
        return [self.image[a] for a in range(address, address + count)]


def _put(image: dict[int, int], address: int, words: list[int]) -> None:
    for i, w in enumerate(words):
        image[address + i] = w


def _sunspec_image(base: int, common_len: int, meter_model: int) -> tuple[dict[int, int], int]:
    image: dict[int, int] = {}
    _put(image, base, [0x5375, 0x6E53])
    common_at = base + 2
    _put(image, common_at, [1, common_len] + [0] * common_len)
    common = sunspec_model(1, common_at)
    for reg in common.registers:
        text = {"Mn": "amiflow", "Md": "SIM-203", "SN": "SN-42", "Vr": "1.2.3"}.get(reg.name)
        if text:
            _put(image, reg.address, encode_value(reg, text))
    other_at = common_at + 2 + common_len  # a model the client must skip by its length
    _put(image, other_at, [64001, 4, 1, 2, 3, 4])
    meter_at = other_at + 6
    length = 105 if meter_model < 210 else 124
    fill = [0x8000] * length if meter_model < 210 else [0x7FC0, 0x0000] * (length // 2)  # not implemented
    _put(image, meter_at, [meter_model, length, *fill])
    meter = sunspec_model(meter_model, meter_at).by_name()
    sunspec = meter_model < 210
    values: dict[str, float] = {"PhVphA": 2301, "V_SF": -1, "TotWhImp": 123456, "TotWh_SF": 0, "W": 250, "W_SF": 0}
    if not sunspec:
        values = {"PhVphA": 230.1, "TotWhImp": 123456.0, "W": 250.0}
    for name, v in values.items():
        _put(image, meter[name].address, encode_value(meter[name], v, sunspec=True))
    if sunspec:
        _put(image, meter["TotWhExp"].address, [0, 0])
    _put(image, meter_at + 2 + length, [0xFFFF, 0])
    return image, meter_at


@pytest.mark.parametrize(
    ("base", "common_len", "model"), [(40000, 66, 203), (0, 65, 201), (50000, 66, 213), (40000, 65, 211)]
)
async def test_sunspec_walk_finds_models_by_length_and_reads_scaled_values(
    base: int, common_len: int, model: int
) -> None:
    image, meter_at = _sunspec_image(base, common_len, model)
    client = _ImageClient(image, map_name="sunspec")
    chain = await client.sunspec_models()
    assert [m[0] for m in chain] == [1, 64001, model]
    assert chain[-1][1] == meter_at  # found by walking, not by a hard-coded offset
    ident = await client.identify()
    assert ident["manufacturer"] == "amiflow" and ident["serial"] == "SN-42" and ident["model"] == "SIM-203"
    before = len(client.reads)
    batch = await client.read_readings(1_700_000_000)
    assert len(client.reads) - before == 1  # one request spans the model's unused points
    got = dict(zip(batch.obis, batch.value, strict=True))
    assert got["1-0:32.7.0"] == pytest.approx(230.1, rel=1e-6)
    assert got["1-0:1.8.0"] == 123456.0 and got["1-0:1.7.0"] == 250.0
    assert "1-0:2.8.0" not in got  # not implemented (acc32 0 / NaN) is left out, never stored as 0
    assert set(batch.source) == {int(Source.MODBUS)} and set(batch.ts) == {1_700_000_000}
    assert all(count <= 125 for _fc, _a, count in client.reads)


async def test_sunspec_walk_without_marker_or_end_is_a_protocol_error() -> None:
    client = _ImageClient({}, map_name="sunspec")
    with pytest.raises(ProtocolError, match="no SunSpec 'SunS' marker"):
        await client.register_map()
    looping: dict[int, int] = {}
    _put(looping, 40000, [0x5375, 0x6E53])
    for i in range(70):  # a chain that never ends must not be walked forever
        _put(looping, 40002 + i * 3, [64001, 1, 0])
    with pytest.raises(ProtocolError, match="no end marker"):
        await _ImageClient(looping, map_name="sunspec").sunspec_models()


async def test_eastron_read_readings_in_base_units_and_word_order_param() -> None:
    m = load_map("sdm630").by_name()
    image = dict.fromkeys(range(0, 400), 0)
    _put(image, m["import_energy_active"].address, encode_value(m["import_energy_active"], 1234.5, word_order="little"))
    _put(image, m["l1_voltage"].address, encode_value(m["l1_voltage"], 231.0, word_order="little"))
    client = _ImageClient(image, map_name="sdm630")
    client._word_order = "little"
    batch = await client.read_readings(60)
    got = dict(zip(batch.obis, batch.value, strict=True))
    units = dict(zip(batch.obis, batch.unit, strict=True))
    assert got["1-0:1.8.0"] == 1234500.0 and units["1-0:1.8.0"] == "Wh"
    assert got["1-0:32.7.0"] == 231.0 and units["1-0:32.7.0"] == "V"
    assert len(set(batch.obis)) == len(batch.obis)
    assert all(c % 2 == 0 and c <= 80 for _fc, _a, c in client.reads)
    assert not np.isnan(batch.value).any() and not math.isnan(sum(got.values()))


@given(
    st.lists(
        st.tuples(st.integers(0, 600), st.sampled_from([3, 4]), st.sampled_from(["float32", "uint16", "acc32"])),
        min_size=1,
        max_size=40,
    ),
    st.integers(2, 125),
    st.booleans(),
    st.integers(0, 32),
)
def test_coalescing_invariants(rows: list[tuple[int, int, str]], limit: int, even: bool, gap: int) -> None:
    regs = [Register(f"r{i}", a, fc, t, 2 if t != "uint16" else 1) for i, (a, fc, t) in enumerate(rows)]
    if even and any(r.end - (r.address - r.address % 2) + (r.end % 2) > limit for r in regs):
        with pytest.raises(ConfigError, match="exceed the limit"):  # cannot be read within the vendor limit
            plan_reads(regs, max_registers=limit, even=even, max_gap=gap)
        return
    requests = plan_reads(regs, max_registers=limit, even=even, max_gap=gap)
    _covers(requests, regs)
    for q in requests:
        assert 0 < q.count <= limit
        assert all(r.function_code == q.function_code for r in q.registers)
        if even:
            assert q.count % 2 == 0 and q.address % 2 == 0
    assert len(requests) <= len(regs)  # never more requests than values
