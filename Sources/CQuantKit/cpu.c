/* CPU feature detection: the only C in QuantKit besides the header. */
#include "qk_cpu.h"

#include <cpuid.h>
#include <unistd.h>

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

uint32_t qkint_cpu_features(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return 0;
    const uint64_t xcr0 = read_xcr0();
    const int ymm_os = (xcr0 & 0x6) == 0x6;
    const int zmm_os = (xcr0 & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const int avx2 = (b >> 5) & 1, bmi2 = (b >> 8) & 1;
    const int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    const int avx512vnni = (c >> 11) & 1;
    uint32_t features = 0;
    if (ymm_os && avx2 && fma && f16c && bmi2) features |= QKINT_CPU_AVX2;
    if (features && zmm_os && avx512f && avx512dq && avx512bw && avx512vl) {
        features |= QKINT_CPU_AVX512;
        if (avx512vnni) features |= QKINT_CPU_AVX512VNNI;
    }
    if (ymm_os && __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 4) & 1)) features |= QKINT_CPU_AVXVNNI;
    return features;
}

int32_t qkint_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int32_t)n;
}
