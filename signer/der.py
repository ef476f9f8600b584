"""Just enough DER to assemble CMS from pre-encoded parts (X.690 definite lengths)."""

from __future__ import annotations


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def sequence(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def set_of(*parts: bytes) -> bytes:
    """A DER SET OF: elements ordered by their encodings."""
    return tlv(0x31, b"".join(sorted(parts)))


def octet_string(value: bytes) -> bytes:
    return tlv(0x04, value)


def small_integer(value: int) -> bytes:
    assert 0 <= value < 0x80
    return tlv(0x02, bytes([value]))


def context(number: int, content: bytes, *, constructed: bool = True) -> bytes:
    """A context-specific tag ``[number]`` around ``content`` (already without its own tag)."""
    return tlv((0xA0 if constructed else 0x80) | number, content)


def strip_tag(encoded: bytes) -> bytes:
    """The content octets of one DER element (for IMPLICIT retagging)."""
    length_byte = encoded[1]
    if length_byte < 0x80:
        return encoded[2:]
    return encoded[2 + (length_byte & 0x7F):]
