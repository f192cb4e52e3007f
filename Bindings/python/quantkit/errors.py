"""QuantKitError: a non-zero qk_status turned into a Python exception."""

from ._constants import Status
from . import _ffi


class QuantKitError(Exception):
    """A QuantKit call failed.

    status:  the qk_status code (a Status member when the value is known, else the raw int)
    name:    the library's name for it, e.g. "QK_ERROR_NON_FINITE"
    message: the library's qk_last_error() text for the failing call
    """

    def __init__(self, status, name, message, function=None):
        try:
            status = Status(status)
        except ValueError:
            pass
        self.status = status
        self.name = name
        self.message = message
        self.function = function
        where = f"{function}: " if function else ""
        super().__init__(f"{where}{name} ({int(status)}): {message or '(no message)'}")


def check(status, function):
    """Raises QuantKitError for a non-zero status; call right after the failing C function.

    qk_last_error() is thread-local in the library and ctypes calls the C functions on the calling
    thread, so reading it here gets this call's message even with other threads busy.
    """
    if status == 0:
        return
    lib = _ffi.lib()
    message = (lib.qk_last_error() or b"").decode("utf-8", "replace")
    name = (lib.qk_status_string(status) or b"").decode("utf-8", "replace")
    raise QuantKitError(status, name, message, function)
