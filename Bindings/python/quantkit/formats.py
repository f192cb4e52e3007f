"""The library's format table (qk_format_info_*), as Python dataclasses."""

import ctypes
from dataclasses import dataclass
from functools import lru_cache

from . import _ffi
from ._constants import Format, FormatFlag
from .errors import check


@dataclass(frozen=True)
class FormatInfo:
    id: int
    name: str          # canonical name, accepted by every `format=` argument
    description: str
    bits: int          # bits per stored element
    flags: int         # FormatFlag bits
    code_min: int
    code_max: int
    level_max: float   # largest positive level before scaling (int4: 7; bf16: 3.38953e38)

    @property
    def signed(self):
        return bool(self.flags & FormatFlag.SIGNED)

    @property
    def is_float(self):
        return bool(self.flags & FormatFlag.FLOAT)

    @property
    def codebook(self):
        return bool(self.flags & FormatFlag.CODEBOOK)

    @property
    def scaled(self):
        return bool(self.flags & FormatFlag.SCALED)

    @property
    def takes_zero_point(self):
        return bool(self.flags & FormatFlag.ZERO_POINT)

    @property
    def is_integer(self):
        return not (self.is_float or self.codebook)


def _from_struct(info):
    return FormatInfo(
        id=info.format,
        name=(info.name or b"").decode(),
        description=(info.description or b"").decode(),
        bits=info.bits,
        flags=info.flags,
        code_min=info.code_min,
        code_max=info.code_max,
        level_max=float(info.level_max),
    )


@lru_cache(maxsize=None)
def formats():
    """Every format the loaded library offers, in its table order (a tuple of FormatInfo)."""
    lib = _ffi.lib()
    out = []
    for index in range(lib.qk_format_count()):
        info = _ffi.new_struct(_ffi.qk_format_info)
        check(lib.qk_format_info_at(index, ctypes.byref(info)), "qk_format_info_at")
        out.append(_from_struct(info))
    return tuple(out)


@lru_cache(maxsize=None)
def _info_by_id(format_id):
    info = _ffi.new_struct(_ffi.qk_format_info)
    check(_ffi.lib().qk_format_info_get(format_id, ctypes.byref(info)), "qk_format_info_get")
    return _from_struct(info)


def format_info(fmt):
    """FormatInfo for a name (case-insensitive, aliases such as "fp8" allowed), an id, or a FormatInfo.

    Unknown names raise QuantKitError (the library decides what names exist)."""
    if isinstance(fmt, FormatInfo):
        return fmt
    if isinstance(fmt, bool):
        raise TypeError("format must be a name or a Format id, not bool")
    if isinstance(fmt, int):  # includes Format members
        return _info_by_id(int(fmt))
    if not isinstance(fmt, str):
        raise TypeError(f"format must be a name such as 'int4', not {type(fmt).__name__}")
    if "\0" in fmt:
        raise ValueError("format name contains a NUL character")
    out = ctypes.c_int32(Format.INVALID)
    check(_ffi.lib().qk_format_from_name(fmt.encode("utf-8"), ctypes.byref(out)),
          f"qk_format_from_name({fmt!r})")
    return _info_by_id(out.value)
