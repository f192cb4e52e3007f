"""Bit packing of codes, as the header's layouts define it (see QK_LAYOUT_* in quantkit.h).

The library packs its own outputs; Python needs these only to hand it zero points or codes that
come from elsewhere (ONNX tensors, user arrays) and to show codes back unpacked.

  ONNX / MatMulNBits: a little-endian bit stream, first element in the lowest bits; the last byte
                      zero-padded. 16-bit codes are little-endian uint16.
  bitsandbytes (bnb4): 4-bit codes, first element in the HIGH nibble.
"""

import numpy as np


def packed_size(count, bits):
    return (count * bits + 7) // 8


def pack_lsb(codes, bits):
    """uint codes (any int dtype, each < 2**bits) -> packed uint8 bytes, LSB first."""
    codes = np.asarray(codes).reshape(-1).astype(np.uint32)
    if bits == 8:
        return codes.astype(np.uint8)
    if bits == 16:
        return codes.astype("<u2").view(np.uint8)
    if not 1 <= bits < 8:
        raise ValueError(f"cannot pack {bits}-bit codes")
    # One row of `bits` bits per code, lowest bit first, then a little-endian bit stream.
    stream = ((codes[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(stream, bitorder="little")


def unpack_lsb(data, bits, count):
    """Inverse of pack_lsb: the first `count` codes as uint32 (uint16 for 16-bit codes)."""
    data = np.asarray(data, dtype=np.uint8).reshape(-1)
    if bits == 8:
        return data[:count].astype(np.uint32)
    if bits == 16:
        return data[:2 * count].view("<u2").astype(np.uint32)
    stream = np.unpackbits(data, bitorder="little")[:count * bits].reshape(count, bits)
    return (stream.astype(np.uint32) << np.arange(bits, dtype=np.uint32)).sum(axis=1, dtype=np.uint32)


def pack_high_nibble_first(codes):
    """4-bit codes -> bytes with the first code in the high nibble (bitsandbytes, MatMulBnb4)."""
    codes = np.asarray(codes).reshape(-1).astype(np.uint8)
    if codes.size % 2:
        codes = np.concatenate([codes, np.zeros(1, np.uint8)])
    return ((codes[0::2] << 4) | (codes[1::2] & 0xF)).astype(np.uint8)


def unpack_high_nibble_first(data, count):
    data = np.asarray(data, dtype=np.uint8).reshape(-1)
    out = np.empty(data.size * 2, np.uint8)
    out[0::2] = data >> 4
    out[1::2] = data & 0xF
    return out[:count]
