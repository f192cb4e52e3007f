"""Quantize a weight matrix to int4 (blocks of 32) with QuantKit, report the error, dequantize.

Run from the repository root: PYTHONPATH=Bindings/python python3 Examples/python/quantize_weights.py
"""
import numpy as np

import quantkit

w = np.random.default_rng(0).normal(0.0, 0.02, size=(256, 512)).astype(np.float32)

qt = quantkit.quantize(w, format="int4", block_size=32)
w2 = qt.dequantize()

print(qt)
print(quantkit.error(w, qt))
print("max |w - w2| =", float(np.abs(w - w2).max()))
