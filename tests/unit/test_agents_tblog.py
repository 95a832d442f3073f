"""TensorBoard event files written by hand: CRC-32C, record framing, scalars read back."""
import struct

import pytest

from robot_rl.agents.tblog import EventWriter, crc32c, encode_event, masked_crc32c, read_scalars

pytestmark = pytest.mark.unit


def test_crc32c_check_values():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert crc32c(b"") == 0
    x = crc32c(b"abc")
    assert masked_crc32c(b"abc") == ((((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def test_event_encoding_bytes():
    ev = encode_event(1.5, 3, scalars={"a": 2.0})
    # wall_time (field 1, double), step (field 2, varint 3), summary (field 5)
    assert ev[:9] == b"\x09" + struct.pack("<d", 1.5)
    assert ev[9:11] == b"\x10\x03"
    value = b"\x0a\x01a" + b"\x15" + struct.pack("<f", 2.0)
    assert ev[11:] == b"\x2a" + bytes([len(value) + 2]) + b"\x0a" + bytes([len(value)]) + value


def test_writer_round_trip(tmp_path):
    w = EventWriter(tmp_path)
    w.scalars(10, {"eval/success_rate": 0.5, "train/loss": 1.25})
    w.scalars(300, {"eval/success_rate": 0.75})
    w.close()
    got = read_scalars(w.path)
    assert got == [(10, "eval/success_rate", 0.5), (10, "train/loss", 1.25),
                   (300, "eval/success_rate", 0.75)]
    raw = bytearray(w.path.read_bytes())
    raw[-6] ^= 1
    w.path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="CRC"):
        read_scalars(w.path)
