"""QuantKit: low-bit quantization of numpy arrays through libquantkit's C ABI (ctypes).

    import numpy as np, quantkit
    w = np.random.randn(256, 512).astype(np.float32)
    qt = quantkit.quantize(w, "int4", block_size=32)      # blocks of 32 along the last axis
    print(qt, quantkit.error(w, qt).sqnr_db)
    w2 = qt.dequantize()
    with quantkit.pack_weights(qt) as packed:              # w as [N, K]: fused low-bit matmul
        y = quantkit.matmul(np.ones((3, 512), np.float32), packed)   # [3, 256]

The library is found through $QUANTKIT_LIBRARY, a copy bundled in this package, the repository's
.build/release, or the system loader (see quantkit._library). It is loaded on first use.
"""

from ._constants import (Compute, Format, Granularity, Layout, Method, Rounding, Scheme, Status,
                         WeightOrientation)
from ._library import LibraryNotFoundError
from ._ffi import VersionMismatchError
from .api import (compare, dequantize, error, from_codes, get_num_threads, kernel_variant,
                  library_path, quantize, quantize_with_scales, set_num_threads, version,
                  version_number)
from .errors import QuantKitError
from .formats import FormatInfo, format_info, formats
from .layout import QuantizedLayout, layout_for
from .matmul import (PackedMatrix, matmul, matmul_integer, matmul_kernel_variant, pack_matmulnbits,
                     pack_weights)
from .params import QuantParams, make_params
from .quantized import QuantizedTensor
from .stats import ErrorStats

__version__ = "0.2.0"  # of this binding; version() is the loaded library's

__all__ = [
    "version", "version_number", "kernel_variant", "set_num_threads", "get_num_threads",
    "library_path", "formats", "format_info", "FormatInfo", "make_params", "QuantParams",
    "layout_for", "QuantizedLayout", "quantize", "quantize_with_scales", "from_codes", "dequantize",
    "error", "compare", "QuantizedTensor", "ErrorStats", "QuantKitError", "LibraryNotFoundError",
    "VersionMismatchError", "Status", "Format", "Granularity", "Layout", "Method", "Rounding", "Scheme",
    "PackedMatrix", "pack_weights", "pack_matmulnbits", "matmul", "matmul_integer",
    "matmul_kernel_variant", "Compute", "WeightOrientation",
]
