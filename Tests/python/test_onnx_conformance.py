"""Every ONNX backend test case of the quantization operators, replayed with QuantKit, bit-exact.

Run with -s to see the scope table (it is also printed on the terminal for the table test).
"""

import numpy as np
import pytest

import onnx_cases

CASES = onnx_cases.collect()
BY_NAME = {c.name: c for c in CASES}


def test_cases_were_found():
    # Guards against an onnx release that renames or drops the cases (we would then test nothing).
    assert len(CASES) >= 40, [c.name for c in CASES]
    for name in (*onnx_cases.OUT_OF_SCOPE, *onnx_cases.ADAPTED, *onnx_cases.KNOWN_DEVIATIONS):
        assert name in BY_NAME, f"table names a case onnx no longer has: {name}"


def test_print_scope_table(capsys):
    with capsys.disabled():
        print("\nONNX conformance scope:\n" + onnx_cases.status_table(CASES))


def _equal(ours, expected):
    if isinstance(ours, bytes):
        return ours == expected
    ours, expected = np.asarray(ours), np.asarray(expected)
    if ours.shape != expected.shape or ours.dtype != expected.dtype:
        return False
    # Bit-exact for floats as well: compare the stored bits, so -0.0 != +0.0 and NaN == NaN.
    return ours.tobytes() == expected.tobytes()


def _only_zero_signs_differ(ours, expected):
    """For FP4 bytes: every differing nibble is 0x0 vs 0x8 (+0 vs -0)."""
    a = np.frombuffer(ours, np.uint8)
    b = np.frombuffer(expected, np.uint8)
    if a.shape != b.shape:
        return False
    nibbles = [(a & 0xF, b & 0xF), (a >> 4, b >> 4)]
    return all(np.all((x == y) | ((x | y) == 8) & ((x & 7) == 0) & ((y & 7) == 0)) for x, y in nibbles)


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_case(name):
    if name in onnx_cases.OUT_OF_SCOPE:
        pytest.skip(onnx_cases.OUT_OF_SCOPE[name])
    case = BY_NAME[name]
    replay = onnx_cases.REPLAY[onnx_cases.op_type(case)]
    for inputs, outputs in case.data_sets:
        for label, ours, expected in replay(case, inputs, outputs):
            if _equal(ours, expected):
                continue
            if name in onnx_cases.KNOWN_DEVIATIONS and _only_zero_signs_differ(ours, expected):
                continue
            pytest.fail(f"{name}: {label} differs\n  QuantKit: {ours!r}\n  ONNX:     {expected!r}")
