/* Internal to QuantKit (not part of the public header): CPU feature detection. */
#ifndef QK_CPU_H
#define QK_CPU_H
#include <stdint.h>

enum {
    QKINT_CPU_AVX2 = 1,       /* AVX2 + FMA + F16C, with OS support for YMM state */
    QKINT_CPU_AVX512 = 2,     /* AVX-512 F/BW/VL/DQ, with OS support for ZMM state */
    QKINT_CPU_AVX512VNNI = 4,
    QKINT_CPU_AVXVNNI = 8
};

/* Bit set of QKINT_CPU_*; computed with cpuid and xgetbv. */
uint32_t qkint_cpu_features(void);
/* Number of online logical processors (>= 1). */
int32_t qkint_cpu_count(void);

#endif
