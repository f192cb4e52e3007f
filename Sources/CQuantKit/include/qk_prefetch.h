#ifndef QK_PREFETCH_H
#define QK_PREFETCH_H
/* A prefetch hint for the Swift kernels: Swift cannot emit one itself (the _mm_prefetch intrinsic is a
 * macro, and calls to the _m_prefetch builtin are dropped by the importer). */
static inline void qk_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }
#endif
