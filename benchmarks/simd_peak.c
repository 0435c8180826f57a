/* What the cores can really do, measured (see peak.cpu_peak): register-only loops of one multiply-add
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

/* AMX (Sapphire Rapids and later): one tdpbusd multiplies a 16x64 u8 tile by a 64x16 s8 tile (as 16 rows of 64
 * bytes) into a 16x16 int32 tile, 16x16x64 = 16,384 MACs; tdpbf16ps does 16x16x32 = 8,192 bf16 MACs. Four
 * accumulator tiles hide the instruction's latency. Linux hands out tile state only on request
 * (arch_prctl ARCH_REQ_XCOMP_PERM): where it refuses (no AMX, old kernel) the probes return -1 and run nothing.
 * Built only by compilers with the AMX intrinsics (GCC 11, clang 12); without them the symbols are absent. */
#if defined(__x86_64__) && defined(__linux__) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

struct tile_config { unsigned char palette, start_row, reserved[14]; unsigned short colsb[16]; unsigned char rows[16]; };

#define AMX_PROBE(name, isa, dot, macs)                                                                   \
    __attribute__((target(isa))) double name(long iterations, int threads) {                              \
        if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return -1.0;           \
        double begin = omp_get_wtime(), sink = 0.0;                                                       \
        _Pragma("omp parallel num_threads(threads) reduction(+ : sink)") {                                \
            struct tile_config config;                                                                    \
            memset(&config, 0, sizeof config);                                                            \
            config.palette = 1;                                                                           \
            for (int t = 0; t < 6; t++) config.rows[t] = 16, config.colsb[t] = 64;                        \
            _tile_loadconfig(&config);                                                                    \
            unsigned char a[16 * 64] __attribute__((aligned(64)));                                        \
            int out[16 * 16] __attribute__((aligned(64)));                                                \
            memset(a, 1, sizeof a);                                                                       \
            _tile_loadd(4, a, 64);                                                                        \
            _tile_loadd(5, a, 64);                                                                        \
            _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);                                   \
            for (long i = 0; i < iterations; i++) {                                                       \
                dot(0, 4, 5); dot(1, 4, 5); dot(2, 4, 5); dot(3, 4, 5);                                   \
            }                                                                                             \
            _tile_stored(0, out, 64);                                                                     \
            sink += out[0];                                                                               \
            _tile_release();                                                                              \
        }                                                                                                 \
        double seconds = omp_get_wtime() - begin;                                                         \
        return sink == 12345.0 ? 0.0 : (double)iterations * 4 * (macs) * threads / seconds;              \
    }

AMX_PROBE(int8_amx, "amx-tile,amx-int8", _tile_dpbusd, 16 * 16 * 64)
AMX_PROBE(bf16_amx, "amx-tile,amx-bf16", _tile_dpbf16ps, 16 * 16 * 32)
#endif
