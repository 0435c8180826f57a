/* What the cores can really do, measured (see bench_configs.cpu_peak): register-only loops of one multiply-add
 * instruction, one loop per thread, 12 independent chains to hide its latency. Each probe returns multiply-adds
 * (MACs) per second over all threads. Every probe carries its own target attribute, so the file builds with
 * -mavx2 -mfma; call the AVX-512 and AVX-VNNI ones only on CPUs with those flags. */
#include <immintrin.h>
#include <omp.h>

#define CHAINS 12

/* A probe `name` for instruction set `isa`: CHAINS accumulators of type `vec` per thread start at `start(c)` and
 * take `step(acc)`, one instruction of `macs` MACs, per iteration; `lane0` keeps the result observable. */
#define PROBE(name, isa, vec, start, step, lane0, macs)                                                    \
    __attribute__((target(isa))) double name(long iterations, int threads) {                              \
        double begin = omp_get_wtime(), sink = 0.0;                                                       \
        _Pragma("omp parallel num_threads(threads) reduction(+ : sink)") {                                \
            vec acc[CHAINS];                                                                              \
            for (int c = 0; c < CHAINS; c++) acc[c] = start(c);                                           \
            for (long i = 0; i < iterations; i++) {                                                       \
                _Pragma("GCC unroll 12") for (int c = 0; c < CHAINS; c++) acc[c] = step(acc[c]);          \
            }                                                                                             \
            for (int c = 0; c < CHAINS; c++) sink += lane0(acc[c]);                                       \
        }                                                                                                 \
        double seconds = omp_get_wtime() - begin;                                                         \
        return sink == 12345.0 ? 0.0 : (double)iterations * CHAINS * (macs) * threads / seconds;         \
    }

/* fp32: one fused multiply-add is one MAC per lane. AVX2 cores retire 2 vfmadd ymm per cycle, so that probe's
 * rate / (16 x threads) is the clock; 512-bit vfmadd gains nothing where a core splits it into 256-bit halves. */
#define FMA_YMM(acc) _mm256_fmadd_ps(acc, _mm256_set1_ps(0.999f), _mm256_set1_ps(1e-3f))
#define FMA_ZMM(acc) _mm512_fmadd_ps(acc, _mm512_set1_ps(0.999f), _mm512_set1_ps(1e-3f))
PROBE(fp32_fma_ymm, "avx2,fma", __m256, _mm256_set1_ps, FMA_YMM, _mm256_cvtss_f32, 8)
PROBE(fp32_fma_zmm, "avx512f", __m512, _mm512_set1_ps, FMA_ZMM, _mm512_reduce_add_ps, 16)

/* int8: vpdpbusd multiplies 4 u8 x s8 pairs per int32 lane and adds them into it; zmm (AVX512-VNNI) or ymm
 * (AVX-VNNI, VEX-encoded). */
#define DOT_ZMM(acc) _mm512_dpbusd_epi32(acc, _mm512_set1_epi8(3), _mm512_set1_epi8(-2))
#define DOT_YMM(acc) _mm256_dpbusd_avx_epi32(acc, _mm256_set1_epi8(3), _mm256_set1_epi8(-2))
#define FIRST_LANE_YMM(acc) _mm256_extract_epi32(acc, 0)
PROBE(int8_vnni_zmm, "avx512f,avx512vnni", __m512i, _mm512_set1_epi32, DOT_ZMM, _mm512_reduce_add_epi32, 64)
PROBE(int8_vnni_ymm, "avx2,avxvnni", __m256i, _mm256_set1_epi32, DOT_YMM, FIRST_LANE_YMM, 32)
