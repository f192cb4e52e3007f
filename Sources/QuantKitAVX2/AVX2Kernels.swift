// AVX2 kernels (filled in by FastPaths work).
