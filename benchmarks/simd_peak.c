/* The clock the cores really run at, measured (see bench_configs.measured_clock): a register-only loop of
 * 256-bit fused multiply-adds, one per thread, 12 independent chains to hide the FMA latency. AVX2 cores
 * retire 2 FMAs per cycle, so the rate divided by 16 fp32 MACs per cycle per thread is the clock. */
#include <immintrin.h>
#include <omp.h>

#define CHAINS 12

double fp32_macs_per_s(long iterations, int threads) {
    double start = omp_get_wtime();
    float sink = 0.0f;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
        __m256 acc[CHAINS], a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps((float)c);
        for (long i = 0; i < iterations; i++)
#pragma GCC unroll 12
            for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
        for (int c = 0; c < CHAINS; c++) sink += _mm256_cvtss_f32(acc[c]);
    }
    double seconds = omp_get_wtime() - start;
    return sink == 12345.0f ? 0.0 : (double)iterations * CHAINS * 8 * threads / seconds;
}
