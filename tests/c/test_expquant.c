/*
 * C99 test of the expquant C ABI. Built by tests/c_abi.rs with
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude ...
 * and linked once against libexpquant.so and once against libexpquant.a.
 * Prints every failed check and exits nonzero if there was one.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Names a C program may well use for itself. The header defines only EXPQ_/expq_ names, so
 * these survive the include; a redefinition there would fail this -Werror build. */
#define FORMAT_VERSION "this program's own"
#define HEADER_LEN "this program's own"
#define CONTAINER_ALIGN "this program's own"
#define MAX_NAME_LEN "this program's own"
#define MAX_LEVELS "this program's own"

#include "expquant.h"

/* The version macros at compile time, as a program that needs a minimum version checks it. */
#if !defined(EXPQ_VERSION_MAJOR) || !defined(EXPQ_VERSION_MINOR) || !defined(EXPQ_VERSION_PATCH)
#error "expquant.h does not define EXPQ_VERSION_MAJOR, _MINOR and _PATCH"
#endif
#if EXPQ_VERSION_MAJOR == 0 && EXPQ_VERSION_MINOR < 1
#error "this test needs expquant 0.1 or later"
#endif
/* Integer constant expressions: usable in array sizes (a negative size does not compile). */
typedef char version_is_a_number[(EXPQ_VERSION_MAJOR * 10000L + EXPQ_VERSION_MINOR * 100L +
                                       EXPQ_VERSION_PATCH) >= 100L ? 1 : -1];

#include "check.h"

static const char *status_name(expq_status s) {
    switch (s) {
    case EXPQ_STATUS_OK: return "OK";
    case EXPQ_STATUS_NULL_POINTER: return "NULL_POINTER";
    case EXPQ_STATUS_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case EXPQ_STATUS_NON_FINITE: return "NON_FINITE";
    case EXPQ_STATUS_BUFFER_TOO_SMALL: return "BUFFER_TOO_SMALL";
    case EXPQ_STATUS_CORRUPT_DATA: return "CORRUPT_DATA";
    case EXPQ_STATUS_UNSUPPORTED_VERSION: return "UNSUPPORTED_VERSION";
    case EXPQ_STATUS_PANIC: return "PANIC";
    }
    return "(not an expq_status)";
}

/* Which statuses have been provoked from C: every one except PANIC (which needs a bug). */
static int seen[8];

static char last_message[512];

/* Checks that `got` is `want`; for a failure also that the last error message is non-empty
 * and contains `needle` (if not NULL). Returns whether the status matched. */
static int expect_status_at(const char *file, int line, const char *what, expq_status got,
                            expq_status want, const char *needle) {
    int ok = 1;
    last_message[0] = '\0';
    if (got != want) {
        fprintf(stderr, "%s:%d: %s returned %s, expected %s\n", file, line, what,
                status_name(got), status_name(want));
        failures++;
        ok = 0;
    }
    if ((unsigned)want < 8 && got == want) {
        seen[want] = 1;
    }
    if (want != EXPQ_STATUS_OK) {
        size_t len = expq_last_error_message(last_message, sizeof last_message);
        if (len == 0 || strlen(last_message) == 0) {
            fprintf(stderr, "%s:%d: %s: empty last error message\n", file, line, what);
            failures++;
            ok = 0;
        } else if (needle != NULL && strstr(last_message, needle) == NULL) {
            fprintf(stderr, "%s:%d: %s: message \"%s\" does not mention \"%s\"\n", file, line,
                    what, last_message, needle);
            failures++;
            ok = 0;
        }
    }
    return ok;
}

#define EXPECT(call, want, needle) expect_status_at(__FILE__, __LINE__, #call, (call), (want), (needle))
#define EXPECT_OK(call) EXPECT(call, EXPQ_STATUS_OK, NULL)

static int close_to(double got, double want, double tol) {
    return fabs(got - want) <= tol;
}

/* Code i of a packed stream, LSB-first (the layout documented in expquant.h), written
 * independently of the library. */
static unsigned code_at(const uint8_t *packed, unsigned bits, size_t i) {
    unsigned code = 0;
    unsigned b;
    for (b = 0; b < bits; b++) {
        size_t bit = i * bits + b;
        code |= (unsigned)((packed[bit / 8] >> (bit % 8)) & 1u) << b;
    }
    return code;
}

/* A small deterministic generator, uniform in [-1, 1). */
static uint32_t rng_state = 12345u;
static float next_uniform(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) / 8388608.0 - 1.0);
}

static void test_enums_and_version(void) {
    const char *v = expq_version();
    char from_macros[64];
    size_t n;
    CHECK(v != NULL && v[0] >= '0' && v[0] <= '9', "version \"%s\"", v ? v : "(null)");
    CHECK(strchr(v, '.') != NULL, "version \"%s\" has no dot", v);
    /* The header's version is the library's: MAJOR.MINOR.PATCH, then the end or a
     * pre-release or build suffix. */
    sprintf(from_macros, "%d.%d.%d", (int)EXPQ_VERSION_MAJOR, (int)EXPQ_VERSION_MINOR,
            (int)EXPQ_VERSION_PATCH);
    n = strlen(from_macros);
    CHECK(strncmp(v, from_macros, n) == 0 && (v[n] == '\0' || v[n] == '-' || v[n] == '+'),
          "expq_version() \"%s\", header macros %s", v, from_macros);
    CHECK(sizeof(version_is_a_number) == 1, "version typedef");
    {
        /* The kernels' path: one of the documented names. */
        const char *path = expq_simd_path();
        const char *kinds[] = {"scalar", "swar", "avx2", "avx512", "neon"};
        int known = 0;
        size_t k;
        CHECK(path != NULL, "expq_simd_path() is NULL");
        for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            size_t len = strlen(kinds[k]);
            if (strncmp(path, kinds[k], len) == 0 && (path[len] == '\0' || path[len] == '+')) {
                known = 1;
            }
        }
        CHECK(known, "expq_simd_path() \"%s\"", path);
    }
    CHECK(strcmp(FORMAT_VERSION, "this program's own") == 0 &&
              strcmp(HEADER_LEN, "this program's own") == 0,
          "the program's own macros");

    CHECK(EXPQ_STATUS_OK == 0 && EXPQ_STATUS_NULL_POINTER == 1 &&
              EXPQ_STATUS_INVALID_ARGUMENT == 2 && EXPQ_STATUS_NON_FINITE == 3 &&
              EXPQ_STATUS_BUFFER_TOO_SMALL == 4 && EXPQ_STATUS_CORRUPT_DATA == 5 &&
              EXPQ_STATUS_UNSUPPORTED_VERSION == 6 && EXPQ_STATUS_PANIC == 7,
          "status numbers are permanent");
    CHECK(EXPQ_SCHEME_LINEAR == 0 && EXPQ_SCHEME_EXPONENTIAL == 1, "scheme numbers");
    CHECK(EXPQ_SCALE_RULE_MAX_ABS == 0 && EXPQ_SCALE_RULE_MSE == 1 &&
              EXPQ_SCALE_RULE_CORRELATION == 2 && EXPQ_SCALE_RULE_OUTPUT_MSE == 3 &&
              EXPQ_SCALE_RULE_FIXED == 4,
          "scale rule numbers");
    CHECK(EXPQ_GRANULARITY_PER_TENSOR == 0 && EXPQ_GRANULARITY_PER_ROW == 1 &&
              EXPQ_GRANULARITY_PER_GROUP == 2,
          "granularity numbers");
    CHECK(EXPQ_MAX_LEVELS == 256, "EXPQ_MAX_LEVELS = %d", (int)EXPQ_MAX_LEVELS);
    CHECK(EXPQ_FORMAT_VERSION == 2 && EXPQ_HEADER_LEN == 64 && EXPQ_CONTAINER_ALIGN == 64 &&
              EXPQ_MAX_NAME_LEN == 1024,
          "format constants");

    {
        expq_config c = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 4);
        CHECK(c.scheme == EXPQ_SCHEME_EXPONENTIAL && c.bits == 4, "scheme/bits copied");
        CHECK(c.scale_rule == EXPQ_SCALE_RULE_MAX_ABS, "default rule is max-abs");
        CHECK(c.granularity == EXPQ_GRANULARITY_PER_ROW, "default granularity is per row");
        CHECK(c.zero_level == true, "zero level on by default");
    }
}

/* Linear 3-bit, max-abs, per row: levels k·a/3 for |k| <= 3 with a = max|w| of the row.
 * The expected k of every weight was worked out by hand (no ties). */
static void test_linear_levels_by_hand(void) {
    enum { ROWS = 2, COLS = 8 };
    const float w[ROWS * COLS] = {
        0.9f, -0.3f, 0.1f, 0.0f, -0.6f, 0.35f, 0.2f, -0.05f,   /* a = 0.9, step 0.3 */
        -2.0f, 1.1f, 0.5f, -0.2f, 1.9f, -0.9f, 0.3f, -1.5f,    /* a = 2.0, step 2/3 */
    };
    const int k[ROWS * COLS] = {
        3, -1, 0, 0, -2, 1, 1, 0,
        -3, 2, 1, 0, 3, -1, 0, -2,
    };
    const float a[ROWS] = {0.9f, 2.0f};
    expq_config config = expq_config_default(EXPQ_SCHEME_LINEAR, 3);
    expq_tensor *t = NULL;
    float out[ROWS * COLS];
    const uint8_t *codes = NULL;
    size_t codes_len = 0, i, r, n_levels = 0;
    float levels[EXPQ_MAX_LEVELS];

    if (!EXPECT_OK(expq_quantize(w, ROWS, COLS, &config, &t))) return;
    CHECK(t != NULL, "tensor written");
    CHECK(expq_tensor_rows(t) == ROWS && expq_tensor_cols(t) == COLS, "shape");
    CHECK(expq_tensor_bits(t) == 3, "bits %u", (unsigned)expq_tensor_bits(t));
    CHECK(expq_tensor_group_count(t) == ROWS, "one group per row");
    CHECK(expq_tensor_row_bytes(t) == 3, "8 codes of 3 bits = 3 bytes");
    /* 2 rows x 3 bytes x 8 bits + 2 scales x 32 bits, over 16 weights. */
    CHECK(expq_tensor_bits_per_weight(t) == 7.0, "bits per weight %g",
          expq_tensor_bits_per_weight(t));

    EXPECT_OK(expq_tensor_dequantize(t, out, ROWS * COLS));
    for (i = 0; i < ROWS * COLS; i++) {
        double want = k[i] * (double)a[i / COLS] / 3.0;
        CHECK(close_to(out[i], want, 1e-6), "w[%u] = %g dequantized to %.9g, want %.9g",
              (unsigned)i, w[i], out[i], want);
    }

    /* Codes: level index, ascending, so code = k + 3. Rows start on byte boundaries. */
    EXPECT_OK(expq_tensor_packed_codes(t, &codes, &codes_len));
    CHECK(codes != NULL && codes_len == 6, "packed length %u", (unsigned)codes_len);
    for (i = 0; codes != NULL && i < ROWS * COLS; i++) {
        unsigned c = code_at(codes + (i / COLS) * 3, 3, i % COLS);
        CHECK(c == (unsigned)(k[i] + 3), "code of w[%u] is %u, want %d", (unsigned)i, c,
              k[i] + 3);
    }

    for (r = 0; r < ROWS; r++) {
        EXPECT_OK(expq_tensor_group_levels(t, r, levels, EXPQ_MAX_LEVELS, &n_levels));
        CHECK(n_levels == 7, "3 bits with zero: 7 levels, got %u", (unsigned)n_levels);
        for (i = 0; i < n_levels && i < 7; i++) {
            double want = ((int)i - 3) * (double)a[r] / 3.0;
            CHECK(close_to(levels[i], want, 1e-6), "row %u level %u = %.9g, want %.9g",
                  (unsigned)r, (unsigned)i, levels[i], want);
        }
        /* The firmware path reproduces the row from its packed bytes and its levels. */
        {
            float row[COLS];
            EXPECT_OK(expq_decode(3, codes + r * 3, 3, levels, n_levels, row, COLS));
            for (i = 0; i < COLS; i++) {
                CHECK(row[i] == out[r * COLS + i], "decode row %u col %u", (unsigned)r,
                      (unsigned)i);
            }
        }
    }
    expq_tensor_free(t);
}

/* Exponential 3-bit with fixed a = 1, q = 0.5: magnitudes 1, 0.5, 0.25 and zero, all exact
 * in binary, so the dequantized values must be equal, not just close. */
static void test_fixed_exponential_exact(void) {
    const float w[8] = {0.9f, 0.3f, -0.4f, 0.1f, -0.2f, 0.7f, -3.0f, 0.13f};
    const float want[8] = {1.0f, 0.25f, -0.5f, 0.0f, -0.25f, 0.5f, -1.0f, 0.25f};
    const float want_levels[7] = {-1.0f, -0.5f, -0.25f, 0.0f, 0.25f, 0.5f, 1.0f};
    expq_config config = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 3);
    expq_tensor *t = NULL;
    float out[8], levels[8];
    size_t i, n = 0;

    config.scale_rule = EXPQ_SCALE_RULE_FIXED;
    config.fixed_a = 1.0;
    config.fixed_q = 0.5;
    config.granularity = EXPQ_GRANULARITY_PER_TENSOR;
    if (!EXPECT_OK(expq_quantize(w, 2, 4, &config, &t))) return;
    EXPECT_OK(expq_tensor_dequantize(t, out, 8));
    for (i = 0; i < 8; i++) {
        CHECK(out[i] == want[i], "w = %g -> %g, want %g", w[i], out[i], want[i]);
    }
    EXPECT_OK(expq_tensor_group_levels(t, 0, levels, 8, &n));
    CHECK(n == 7, "7 levels, got %u", (unsigned)n);
    for (i = 0; i < 7 && i < n; i++) {
        CHECK(levels[i] == want_levels[i], "level %u = %g", (unsigned)i, levels[i]);
    }
    /* Per tensor: a + q stored once, 2 rows x 2 bytes of codes: (32 + 64) / 8 = 12. */
    CHECK(expq_tensor_bits_per_weight(t) == 12.0, "bits per weight %g",
          expq_tensor_bits_per_weight(t));
    expq_tensor_free(t);
}

/* GEMV against a plain loop over the dequantized matrix (in double). Tolerance: float
 * accumulation of `cols` products, |y - ref| <= 1e-5 * sum_j |W[r][j] x[j]| + 1e-7. */
static void test_gemv(void) {
    enum { ROWS = 7, COLS = 13 };
    float w[ROWS * COLS], deq[ROWS * COLS], x[COLS], y[ROWS], y2[ROWS];
    expq_config config = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 4);
    expq_tensor *t = NULL;
    size_t i, r, j;

    for (i = 0; i < ROWS * COLS; i++) w[i] = next_uniform() * (1.0f + (float)(i % 5));
    for (j = 0; j < COLS; j++) x[j] = next_uniform();
    config.granularity = EXPQ_GRANULARITY_PER_GROUP;
    config.group_size = 5;
    if (!EXPECT_OK(expq_quantize(w, ROWS, COLS, &config, &t))) return;
    CHECK(expq_tensor_group_count(t) == ROWS * 3, "13 columns in groups of 5: 3 per row");
    EXPECT_OK(expq_tensor_dequantize(t, deq, ROWS * COLS));
    EXPECT_OK(expq_tensor_gemv(t, x, COLS, y, ROWS));
    for (r = 0; r < ROWS; r++) {
        double ref = 0.0, mag = 0.0;
        for (j = 0; j < COLS; j++) {
            ref += (double)deq[r * COLS + j] * x[j];
            mag += fabs((double)deq[r * COLS + j] * x[j]);
        }
        CHECK(close_to(y[r], ref, 1e-5 * mag + 1e-7), "y[%u] = %.9g, reference %.9g",
              (unsigned)r, y[r], ref);
    }

    /* Row ranges, including an empty one, give exactly the full GEMV's entries. */
    for (i = 0; i < ROWS; i++) y2[i] = -12345.0f;
    EXPECT_OK(expq_tensor_gemv_rows(t, x, COLS, 0, 3, y2, 3));
    EXPECT_OK(expq_tensor_gemv_rows(t, x, COLS, 3, 3, y2 + 3, 0));
    EXPECT_OK(expq_tensor_gemv_rows(t, x, COLS, 3, ROWS, y2 + 3, ROWS - 3));
    for (r = 0; r < ROWS; r++) {
        CHECK(y2[r] == y[r], "gemv_rows y[%u] = %.9g, gemv %.9g", (unsigned)r, y2[r], y[r]);
    }

    /* Int8 activations: near the f32 GEMV (the tight bound is tested in Rust; here a loose
     * 5 % of sum_j |W[r][j]| * max|x|), row ranges exactly equal, NaN rejected. */
    EXPECT_OK(expq_tensor_gemv_int8(t, x, COLS, y2, ROWS));
    for (r = 0; r < ROWS; r++) {
        double mag = 0.0;
        for (j = 0; j < COLS; j++) mag += fabs((double)deq[r * COLS + j]);
        CHECK(close_to(y2[r], y[r], 0.05 * mag + 1e-6), "gemv_int8 y[%u] = %.9g, gemv %.9g",
              (unsigned)r, y2[r], y[r]);
    }
    {
        float y8[ROWS], xn[COLS];
        EXPECT_OK(expq_tensor_gemv_int8_rows(t, x, COLS, 2, ROWS, y8, ROWS - 2));
        for (r = 2; r < ROWS; r++) {
            CHECK(y8[r - 2] == y2[r], "gemv_int8_rows y[%u] = %.9g, gemv_int8 %.9g",
                  (unsigned)r, y8[r - 2], y2[r]);
        }
        memcpy(xn, x, sizeof xn);
        xn[4] = (float)NAN;
        EXPECT(expq_tensor_gemv_int8(t, xn, COLS, y8, ROWS), EXPQ_STATUS_NON_FINITE, "index 4");
    }
    expq_tensor_free(t);
}

/* GEMM (X is cols x n, Y rows x n, both row-major) against a plain loop over the
 * dequantized matrix (in double), tolerance as test_gemv's; row ranges and the view equal the
 * tensor's product exactly; bad lengths fail and leave y alone. 300 columns span two K
 * blocks of the kernel, 9 rows two row panels, 5 columns one partial column tile. */
static void test_gemm(void) {
    enum { ROWS = 9, COLS = 300, N = 5 };
    static float w[ROWS * COLS], deq[ROWS * COLS], x[COLS * N];
    float y[ROWS * N], y2[ROWS * N];
    expq_config config = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 4);
    expq_tensor *t = NULL;
    expq_view v;
    uint8_t *buf = NULL;
    size_t i, r, j, c, need = 0;

    for (i = 0; i < ROWS * COLS; i++) w[i] = next_uniform() * (1.0f + (float)(i % 7));
    for (i = 0; i < COLS * N; i++) x[i] = next_uniform();
    config.granularity = EXPQ_GRANULARITY_PER_GROUP;
    config.group_size = 64;
    if (!EXPECT_OK(expq_quantize(w, ROWS, COLS, &config, &t))) return;
    EXPECT_OK(expq_tensor_dequantize(t, deq, ROWS * COLS));
    EXPECT_OK(expq_tensor_gemm(t, x, COLS * N, N, y, ROWS * N));
    for (r = 0; r < ROWS; r++) {
        for (c = 0; c < N; c++) {
            double ref = 0.0, mag = 0.0;
            for (j = 0; j < COLS; j++) {
                ref += (double)deq[r * COLS + j] * x[j * N + c];
                mag += fabs((double)deq[r * COLS + j] * x[j * N + c]);
            }
            CHECK(close_to(y[r * N + c], ref, 1e-5 * mag + 1e-7),
                  "gemm y[%u][%u] = %.9g, reference %.9g", (unsigned)r, (unsigned)c,
                  y[r * N + c], ref);
        }
    }
    for (i = 0; i < ROWS * N; i++) y2[i] = -12345.0f;
    EXPECT_OK(expq_tensor_gemm_rows(t, x, COLS * N, N, 0, 7, y2, 7 * N));
    EXPECT_OK(expq_tensor_gemm_rows(t, x, COLS * N, N, 7, ROWS, y2 + 7 * N, (ROWS - 7) * N));
    CHECK(memcmp(y, y2, sizeof y) == 0, "gemm_rows differs from gemm");

    /* n = 1 is the GEMV, exactly. */
    {
        float g1[ROWS], g2[ROWS];
        EXPECT_OK(expq_tensor_gemv(t, x, COLS, g1, ROWS));
        EXPECT_OK(expq_tensor_gemm(t, x, COLS, 1, g2, ROWS));
        CHECK(memcmp(g1, g2, sizeof g1) == 0, "gemm with n = 1 differs from gemv");
    }

    EXPECT(expq_tensor_serialize(t, NULL, 0, &need), EXPQ_STATUS_BUFFER_TOO_SMALL, NULL);
    buf = (uint8_t *)malloc(need);
    if (buf != NULL && EXPECT_OK(expq_tensor_serialize(t, buf, need, &need)) &&
        EXPECT_OK(expq_view_init(buf, need, &v))) {
        for (i = 0; i < ROWS * N; i++) y2[i] = -12345.0f;
        EXPECT_OK(expq_view_gemm(&v, x, COLS * N, N, y2, ROWS * N));
        CHECK(memcmp(y, y2, sizeof y) == 0, "view gemm differs from the tensor's");
        for (i = 0; i < ROWS * N; i++) y2[i] = -12345.0f;
        EXPECT_OK(expq_view_gemm_rows(&v, x, COLS * N, N, 2, ROWS, y2, (ROWS - 2) * N));
        CHECK(memcmp(y + 2 * N, y2, (ROWS - 2) * N * sizeof(float)) == 0,
              "view gemm_rows differs from gemm");

        for (i = 0; i < ROWS * N; i++) y2[i] = 42.0f;
        EXPECT(expq_view_gemm(&v, x, COLS * N - 1, N, y2, ROWS * N),
               EXPQ_STATUS_BUFFER_TOO_SMALL, "x");
        EXPECT(expq_view_gemm(&v, x, COLS * N, N, y2, ROWS * N - 1),
               EXPQ_STATUS_BUFFER_TOO_SMALL, "y");
        EXPECT(expq_view_gemm(&v, x, COLS * N, N - 1, y2, ROWS * N),
               EXPQ_STATUS_INVALID_ARGUMENT, "x");
        EXPECT(expq_view_gemm_rows(&v, x, COLS * N, N, 4, ROWS + 1, y2, (ROWS - 3) * N),
               EXPQ_STATUS_INVALID_ARGUMENT, "4..10");
        EXPECT(expq_view_gemm(&v, x, COLS * N, SIZE_MAX, y2, ROWS * N),
               EXPQ_STATUS_INVALID_ARGUMENT, "overflow");
        EXPECT(expq_view_gemm(&v, NULL, COLS * N, N, y2, ROWS * N), EXPQ_STATUS_NULL_POINTER,
               "`x`");
        EXPECT(expq_view_gemm(&v, x, COLS * N, N, (float *)(void *)buf, ROWS * N),
               EXPQ_STATUS_INVALID_ARGUMENT, "overlap");
        for (i = 0; i < ROWS * N; i++) CHECK(y2[i] == 42.0f, "y2[%u] written", (unsigned)i);
    }
    CHECK(buf != NULL, "malloc(%u)", (unsigned)need);
    free(buf);

    for (i = 0; i < ROWS * N; i++) y2[i] = 42.0f;
    EXPECT(expq_tensor_gemm(t, x, COLS * N, N, y2, ROWS * N - 1), EXPQ_STATUS_BUFFER_TOO_SMALL,
           "y");
    EXPECT(expq_tensor_gemm_rows(t, x, COLS * N, N, 5, 3, y2, 0), EXPQ_STATUS_INVALID_ARGUMENT,
           "5..3");
    EXPECT(expq_tensor_gemm(NULL, x, COLS * N, N, y2, ROWS * N), EXPQ_STATUS_NULL_POINTER,
           "`t`");
    EXPECT(expq_tensor_gemm(t, x, COLS * N, N, x + 1, ROWS * N), EXPQ_STATUS_INVALID_ARGUMENT,
           "overlap");
    for (i = 0; i < ROWS * N; i++) CHECK(y2[i] == 42.0f, "y2[%u] written", (unsigned)i);
    expq_tensor_free(t);
}

/* expq_decode on bytes packed by hand (LSB-first). */
static void test_decode_hand_packed(void) {
    /* 3 bits: codes 1, 2, 3, 0, 7 -> bits 001 010 011 000 111 -> 0xD1 0x70. */
    const uint8_t packed3[2] = {0xD1, 0x70};
    const unsigned codes3[5] = {1, 2, 3, 0, 7};
    /* 4 bits: element 2i is the low nibble: codes 1, 2, 3, 4 -> 0x21 0x43. */
    const uint8_t packed4[2] = {0x21, 0x43};
    /* 1 bit: codes 1,0,1,1,0,0,0,1, 1 -> 0x8D 0x01. */
    const uint8_t packed1[2] = {0x8D, 0x01};
    const unsigned codes1[9] = {1, 0, 1, 1, 0, 0, 0, 1, 1};
    float levels[8], out[9];
    size_t i;

    for (i = 0; i < 8; i++) levels[i] = (float)i * 0.5f - 2.0f;
    EXPECT_OK(expq_decode(3, packed3, 2, levels, 8, out, 5));
    for (i = 0; i < 5; i++) {
        CHECK(out[i] == levels[codes3[i]], "3-bit code %u: %g", (unsigned)i, out[i]);
    }
    EXPECT_OK(expq_decode(4, packed4, 2, levels, 8, out, 4));
    for (i = 0; i < 4; i++) {
        CHECK(out[i] == levels[i + 1], "4-bit code %u: %g", (unsigned)i, out[i]);
    }
    EXPECT_OK(expq_decode(1, packed1, 2, levels, 2, out, 9));
    for (i = 0; i < 9; i++) {
        CHECK(out[i] == levels[codes1[i]], "1-bit code %u: %g", (unsigned)i, out[i]);
    }
}

/* Every status value provoked from C, each with a message; outputs untouched on failure. */
static void test_errors(void) {
    const float w[6] = {0.5f, -1.0f, 0.25f, 0.75f, -0.125f, 1.0f};
    float bad[6] = {0.5f, -1.0f, 0.25f, 0.75f, -0.125f, 1.0f};
    expq_config config = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 4);
    expq_config c;
    expq_tensor *t = NULL;
    expq_tensor *const sentinel = (expq_tensor *)&config; /* never dereferenced */
    expq_tensor *out = sentinel;
    float buf[8], x[3] = {1.0f, 2.0f, 3.0f}, y[4];
    const uint8_t *codes = NULL;
    size_t len = 0, i;
    const uint8_t packed[2] = {0xD1, 0x70}; /* 3-bit codes 1, 2, 3, 0, 7 */
    float levels[7] = {-3, -2, -1, 0, 1, 2, 3};

    if (!EXPECT_OK(expq_quantize(w, 2, 3, &config, &t))) return;

    /* NULL pointers. */
    EXPECT(expq_quantize(NULL, 2, 3, &config, &out), EXPQ_STATUS_NULL_POINTER, "weights");
    EXPECT(expq_quantize(w, 2, 3, NULL, &out), EXPQ_STATUS_NULL_POINTER, "config");
    EXPECT(expq_quantize(w, 2, 3, &config, NULL), EXPQ_STATUS_NULL_POINTER, "out");
    EXPECT(expq_tensor_dequantize(NULL, buf, 6), EXPQ_STATUS_NULL_POINTER, "`t`");
    EXPECT(expq_tensor_dequantize(t, NULL, 6), EXPQ_STATUS_NULL_POINTER, "out");
    EXPECT(expq_tensor_dequantize(t, NULL, 0), EXPQ_STATUS_NULL_POINTER, "out");
    EXPECT(expq_tensor_gemv(t, NULL, 3, y, 2), EXPQ_STATUS_NULL_POINTER, "`x`");
    EXPECT(expq_tensor_gemv(t, x, 3, NULL, 2), EXPQ_STATUS_NULL_POINTER, "`y`");
    EXPECT(expq_tensor_gemv_rows(NULL, x, 3, 0, 1, y, 1), EXPQ_STATUS_NULL_POINTER, "`t`");
    EXPECT(expq_tensor_packed_codes(t, NULL, &len), EXPQ_STATUS_NULL_POINTER, "codes");
    EXPECT(expq_tensor_packed_codes(t, &codes, NULL), EXPQ_STATUS_NULL_POINTER, "codes_len");
    EXPECT(expq_tensor_group_levels(t, 0, NULL, 16, &len), EXPQ_STATUS_NULL_POINTER, "levels");
    EXPECT(expq_tensor_group_levels(t, 0, buf, 8, NULL), EXPQ_STATUS_NULL_POINTER, "written");
    EXPECT(expq_decode(3, packed, 2, NULL, 7, buf, 5), EXPQ_STATUS_NULL_POINTER, "levels");
    EXPECT(expq_decode(3, NULL, 2, levels, 7, buf, 5), EXPQ_STATUS_NULL_POINTER, "packed");
    EXPECT(expq_decode(3, packed, 2, levels, 7, NULL, 5), EXPQ_STATUS_NULL_POINTER, "out");
    CHECK(codes == NULL && len == 0, "out-parameters untouched on failure");
    CHECK(expq_tensor_rows(NULL) == 0 && expq_tensor_cols(NULL) == 0 &&
              expq_tensor_bits(NULL) == 0 && expq_tensor_bits_per_weight(NULL) == 0.0 &&
              expq_tensor_group_count(NULL) == 0 && expq_tensor_row_bytes(NULL) == 0,
          "accessors return 0 for NULL");
    expq_tensor_free(NULL);

    /* Invalid arguments. */
    c = config; c.bits = 0;
    EXPECT(expq_quantize(w, 2, 3, &c, &out), EXPQ_STATUS_INVALID_ARGUMENT, "got 0");
    c = config; c.bits = 9;
    EXPECT(expq_quantize(w, 2, 3, &c, &out), EXPQ_STATUS_INVALID_ARGUMENT, "got 9");
    c = config; c.scheme = (expq_scheme)7;
    EXPECT(expq_quantize(w, 2, 3, &c, &out), EXPQ_STATUS_INVALID_ARGUMENT, "scheme");
    c = config; c.scale_rule = (expq_scale_rule)9;
    EXPECT(expq_quantize(w, 2, 3, &c, &out), EXPQ_STATUS_INVALID_ARGUMENT, "scale_rule");
    c = config; c.granularity = (expq_granularity)3;
    EXPECT(expq_quantize(w, 2, 3, &c, &out), EXPQ_STATUS_INVALID_ARGUMENT, "granularity");
    c = config; c.granularity = EXPQ_GRANULARITY_PER_GROUP; c.group_size = 0;
    EXPECT(expq_quantize(w, 2, 3, &c, &out), EXPQ_STATUS_INVALID_ARGUMENT, "group size");
    c = config; c.scale_rule = EXPQ_SCALE_RULE_FIXED; c.fixed_a = -1.0; c.fixed_q = 0.5;
    EXPECT(expq_quantize(w, 2, 3, &c, &out), EXPQ_STATUS_INVALID_ARGUMENT, "a = -1");
    EXPECT(expq_quantize(w, 0, 3, &config, &out), EXPQ_STATUS_INVALID_ARGUMENT, "empty");
    EXPECT(expq_quantize(w, SIZE_MAX, 2, &config, &out), EXPQ_STATUS_INVALID_ARGUMENT, NULL);
    EXPECT(expq_tensor_dequantize(t, buf, 7), EXPQ_STATUS_INVALID_ARGUMENT, "7");
    EXPECT(expq_tensor_gemv_rows(t, x, 3, 2, 1, y, 0), EXPQ_STATUS_INVALID_ARGUMENT, "2..1");
    EXPECT(expq_tensor_gemv_rows(t, x, 3, 0, 3, y, 3), EXPQ_STATUS_INVALID_ARGUMENT, "0..3");
    EXPECT(expq_tensor_gemv(t, buf, 3, buf + 1, 2), EXPQ_STATUS_INVALID_ARGUMENT, "overlap");
    EXPECT(expq_tensor_group_levels(t, 2, buf, 8, &len), EXPQ_STATUS_INVALID_ARGUMENT, "group 2");
    EXPECT(expq_decode(0, packed, 2, levels, 7, buf, 5), EXPQ_STATUS_INVALID_ARGUMENT, "bits");
    EXPECT(expq_decode(9, packed, 2, levels, 7, buf, 5), EXPQ_STATUS_INVALID_ARGUMENT, "bits");
    EXPECT(expq_decode(3, packed, 2, levels, 0, buf, 5), EXPQ_STATUS_INVALID_ARGUMENT, "level");
    EXPECT(expq_decode(3, packed, 2, levels, 7, levels, 5), EXPQ_STATUS_INVALID_ARGUMENT,
           "overlap");
    CHECK(out == sentinel, "*out untouched by failed expq_quantize");

    /* Non-finite weights. */
    bad[4] = NAN;
    EXPECT(expq_quantize(bad, 2, 3, &config, &out), EXPQ_STATUS_NON_FINITE, "index 4");
    bad[4] = -0.125f;
    bad[1] = INFINITY;
    EXPECT(expq_quantize(bad, 2, 3, &config, &out), EXPQ_STATUS_NON_FINITE, "index 1");
    CHECK(out == sentinel, "*out untouched by failed expq_quantize");

    /* Buffers too small; output left untouched. */
    for (i = 0; i < 8; i++) buf[i] = 42.0f;
    EXPECT(expq_tensor_dequantize(t, buf, 5), EXPQ_STATUS_BUFFER_TOO_SMALL, "5");
    EXPECT(expq_tensor_gemv(t, x, 3, buf, 1), EXPQ_STATUS_BUFFER_TOO_SMALL, "y");
    EXPECT(expq_tensor_gemv(t, x, 2, buf, 2), EXPQ_STATUS_BUFFER_TOO_SMALL, "x");
    EXPECT(expq_tensor_group_levels(t, 0, buf, 8, &len), EXPQ_STATUS_BUFFER_TOO_SMALL, "15");
    EXPECT(expq_decode(3, packed, 1, levels, 7, buf, 5), EXPQ_STATUS_BUFFER_TOO_SMALL, "packed");
    for (i = 0; i < 8; i++) CHECK(buf[i] == 42.0f, "buf[%u] written on failure", (unsigned)i);

    /* Corrupt data: code 7 with only 7 levels; nothing written. */
    EXPECT(expq_decode(3, packed, 2, levels, 7, buf, 5), EXPQ_STATUS_CORRUPT_DATA, "code 7");
    for (i = 0; i < 8; i++) CHECK(buf[i] == 42.0f, "buf[%u] written on failure", (unsigned)i);

    /* Last error: full length returned, NUL-terminated truncation, NULL/0 queries. */
    {
        char small[5];
        size_t full = expq_last_error_message(NULL, 0);
        size_t again = expq_last_error_message(small, sizeof small);
        CHECK(full > 10 && full == again, "lengths %u and %u", (unsigned)full, (unsigned)again);
        CHECK(strlen(small) == 4 && strncmp(small, "expq", 4) == 0, "truncated \"%s\"", small);
        CHECK(expq_last_error_message(NULL, 100) == full, "NULL buf with a length");
        CHECK(expq_last_error_message(small, 0) == full, "buf_len 0");
    }

    expq_tensor_free(t);
}

/* Bitwise equality of two float arrays (memcmp: -0.0 and NaN payloads count). */
static int same_bits(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof *a) == 0;
}

/* A copy of `len` bytes in a buffer of exactly that size (so that ASan and valgrind see a
 * read past its end), or NULL if len is 0 or malloc fails. */
static uint8_t *copy_bytes(const uint8_t *src, size_t len) {
    uint8_t *p = len ? (uint8_t *)malloc(len) : NULL;
    if (p != NULL) memcpy(p, src, len);
    return p;
}

/* Checks that deserializing and viewing `len` bytes at `bytes` both fail with `want`, with a
 * message mentioning `needle`, and leave their outputs alone. */
static void expect_rejected(const char *what, const uint8_t *bytes, size_t len,
                            expq_status want, const char *needle) {
    expq_tensor *const sentinel = (expq_tensor *)&rng_state; /* never dereferenced */
    expq_tensor *out = sentinel;
    expq_view v, untouched;
    memset(&v, 0x5A, sizeof v);
    untouched = v;
    if (!EXPECT(expq_tensor_deserialize(bytes, len, &out), want, needle)) {
        fprintf(stderr, "  (%s, expq_tensor_deserialize: %s)\n", what, last_message);
    }
    CHECK(out == sentinel, "%s: *out written on failure", what);
    if (!EXPECT(expq_view_init(bytes, len, &v), want, needle)) {
        fprintf(stderr, "  (%s, expq_view_init: %s)\n", what, last_message);
    }
    CHECK(memcmp(&v, &untouched, sizeof v) == 0, "%s: view written on failure", what);
}

/* The view's getters against the tensor that was serialized into `buf`: the same numbers,
 * packed codes and levels, with the codes borrowed from `buf` itself; failures leave the
 * outputs alone. */
static void check_view_getters(const expq_tensor *t, const expq_view *v, const uint8_t *buf) {
    const uint8_t *tcodes = NULL, *vcodes = NULL;
    size_t tcodes_len = 0, vcodes_len = 0, groups, g, k, tn = 0, vn = 0;
    float tlevels[EXPQ_MAX_LEVELS], vlevels[EXPQ_MAX_LEVELS];

    CHECK(expq_view_bits(v) == expq_tensor_bits(t), "view bits %u", (unsigned)expq_view_bits(v));
    CHECK(expq_view_row_bytes(v) == expq_tensor_row_bytes(t), "view row bytes %u",
          (unsigned)expq_view_row_bytes(v));
    groups = expq_view_group_count(v);
    CHECK(groups == expq_tensor_group_count(t) && groups > 1, "view groups %u",
          (unsigned)groups);
    EXPECT_OK(expq_tensor_packed_codes(t, &tcodes, &tcodes_len));
    if (EXPECT_OK(expq_view_packed_codes(v, &vcodes, &vcodes_len))) {
        CHECK(vcodes == buf + EXPQ_HEADER_LEN, "view codes borrowed from the buffer");
        CHECK(vcodes_len == tcodes_len && vcodes_len == expq_view_rows(v) * expq_view_row_bytes(v),
              "view codes length %u", (unsigned)vcodes_len);
        CHECK(tcodes != NULL && memcmp(vcodes, tcodes, vcodes_len) == 0, "view codes differ");
    }
    for (g = 0; g < groups; g++) {
        EXPECT_OK(expq_tensor_group_levels(t, g, tlevels, EXPQ_MAX_LEVELS, &tn));
        if (!EXPECT_OK(expq_view_group_levels(v, g, vlevels, EXPQ_MAX_LEVELS, &vn))) break;
        CHECK(vn == tn && vn == 15, "group %u: %u levels, tensor %u", (unsigned)g, (unsigned)vn,
              (unsigned)tn);
        for (k = 0; k < vn && k < tn; k++) {
            CHECK(vlevels[k] == tlevels[k], "group %u level %u", (unsigned)g, (unsigned)k);
        }
    }
    vn = 99;
    vlevels[0] = 42.0f;
    EXPECT(expq_view_group_levels(v, groups, vlevels, EXPQ_MAX_LEVELS, &vn),
           EXPQ_STATUS_INVALID_ARGUMENT, "group");
    EXPECT(expq_view_group_levels(v, 0, vlevels, 14, &vn), EXPQ_STATUS_BUFFER_TOO_SMALL,
           "levels");
    EXPECT(expq_view_group_levels(v, 0, vlevels, EXPQ_MAX_LEVELS, NULL),
           EXPQ_STATUS_NULL_POINTER, "written");
    EXPECT(expq_view_group_levels(v, 0, (float *)(void *)(buf + EXPQ_HEADER_LEN), 16, &vn),
           EXPQ_STATUS_INVALID_ARGUMENT, "overlap");
    EXPECT(expq_view_packed_codes(v, NULL, &vcodes_len), EXPQ_STATUS_NULL_POINTER, "codes");
    CHECK(vn == 99 && vlevels[0] == 42.0f, "outputs written on failure");
}

/* Serialize, deserialize and view: round trips bit for bit, the size query, corrupted and
 * foreign bytes, and the view's GEMV against the tensor's. */
static void test_storage(void) {
    enum { ROWS = 7, COLS = 13 };
    float w[ROWS * COLS], deq[ROWS * COLS], deq2[ROWS * COLS], deq3[ROWS * COLS];
    float x[COLS], y[ROWS], yv[ROWS], y2[ROWS];
    expq_config config = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 4);
    expq_tensor *t = NULL, *t2 = NULL;
    expq_tensor *const sentinel = (expq_tensor *)&config; /* never dereferenced */
    expq_tensor *out = sentinel;
    uint8_t *buf = NULL, *bad = NULL;
    size_t need = 0, written = 0, i, r, j;
    expq_view v, v2, zeroed;

    for (i = 0; i < ROWS * COLS; i++) w[i] = next_uniform() * (0.5f + (float)(i % 3));
    for (j = 0; j < COLS; j++) x[j] = next_uniform();
    config.granularity = EXPQ_GRANULARITY_PER_GROUP;
    config.group_size = 4;
    config.scale_rule = EXPQ_SCALE_RULE_MSE;
    if (!EXPECT_OK(expq_quantize(w, ROWS, COLS, &config, &t))) return;
    EXPECT_OK(expq_tensor_dequantize(t, deq, ROWS * COLS));

    /* Size query: NULL buffer, then a buffer one byte short (left untouched). */
    EXPECT(expq_tensor_serialize(t, NULL, 0, &need), EXPQ_STATUS_BUFFER_TOO_SMALL, "needed");
    /* Header + 7 rows x 7 bytes of codes + 7 x 4 groups x (a, q) as f32. */
    CHECK(need == EXPQ_HEADER_LEN + ROWS * 7 + ROWS * 4 * 8, "needed size %u", (unsigned)need);
    EXPECT(expq_tensor_serialize(t, NULL, 100000, &written), EXPQ_STATUS_BUFFER_TOO_SMALL,
           "NULL");
    CHECK(written == need, "NULL buffer with a large cap: written %u", (unsigned)written);
    buf = (uint8_t *)malloc(need);
    if (buf == NULL) {
        CHECK(0, "malloc(%u)", (unsigned)need);
        expq_tensor_free(t);
        return;
    }
    memset(buf, 0xEE, need);
    written = 0;
    EXPECT(expq_tensor_serialize(t, buf, need - 1, &written), EXPQ_STATUS_BUFFER_TOO_SMALL,
           "needed");
    CHECK(written == need, "short buffer: written %u, need %u", (unsigned)written,
          (unsigned)need);
    for (i = 0; i < need; i++) {
        if (buf[i] != 0xEE) {
            CHECK(0, "buf[%u] written by a failed serialize", (unsigned)i);
            break;
        }
    }
    written = 12345;
    EXPECT(expq_tensor_serialize(NULL, buf, need, &written), EXPQ_STATUS_NULL_POINTER, "`t`");
    EXPECT(expq_tensor_serialize(t, buf, need, NULL), EXPQ_STATUS_NULL_POINTER, "written");
    CHECK(written == 12345, "written changed by a NULL-pointer failure");

    EXPECT_OK(expq_tensor_serialize(t, buf, need, &written));
    CHECK(written == need, "written %u, need %u", (unsigned)written, (unsigned)need);
    CHECK(memcmp(buf, "EXQT", 4) == 0 && buf[4] == 1 && buf[5] == 0, "magic and version 1");

    /* Deserialize: the same tensor, bit for bit. */
    if (EXPECT_OK(expq_tensor_deserialize(buf, need, &t2))) {
        CHECK(expq_tensor_rows(t2) == ROWS && expq_tensor_cols(t2) == COLS &&
                  expq_tensor_bits(t2) == 4 && expq_tensor_group_count(t2) == ROWS * 4,
              "deserialized shape");
        CHECK(expq_tensor_bits_per_weight(t2) == expq_tensor_bits_per_weight(t),
              "bits per weight %g vs %g", expq_tensor_bits_per_weight(t2),
              expq_tensor_bits_per_weight(t));
        EXPECT_OK(expq_tensor_dequantize(t2, deq2, ROWS * COLS));
        CHECK(same_bits(deq, deq2, ROWS * COLS), "deserialized values differ");
        expq_tensor_free(t2);
    }

    /* The view: no copy, the same values, GEMV within the tolerance of test_gemv. */
    memset(&v, 0, sizeof v);
    if (EXPECT_OK(expq_view_init(buf, need, &v))) {
        CHECK(expq_view_rows(&v) == ROWS && expq_view_cols(&v) == COLS, "view shape");
        CHECK(expq_view_bits_per_weight(&v) == expq_tensor_bits_per_weight(t),
              "view bits per weight %g", expq_view_bits_per_weight(&v));
        for (i = 0; i < ROWS * COLS; i++) deq3[i] = 42.0f;
        EXPECT_OK(expq_view_dequantize(&v, deq3, ROWS * COLS));
        CHECK(same_bits(deq, deq3, ROWS * COLS), "view values differ");
        check_view_getters(t, &v, buf);

        EXPECT_OK(expq_tensor_gemv(t, x, COLS, y, ROWS));
        EXPECT_OK(expq_view_gemv(&v, x, COLS, yv, ROWS));
        for (r = 0; r < ROWS; r++) {
            double mag = 0.0;
            for (j = 0; j < COLS; j++) mag += fabs((double)deq[r * COLS + j] * x[j]);
            CHECK(close_to(yv[r], y[r], 1e-5 * mag + 1e-7), "view y[%u] = %.9g, tensor %.9g",
                  (unsigned)r, yv[r], y[r]);
        }
        /* Row ranges of a copy of the struct equal the full view GEMV exactly. */
        v2 = v;
        EXPECT_OK(expq_view_gemv_rows(&v2, x, COLS, 0, 4, y2, 4));
        EXPECT_OK(expq_view_gemv_rows(&v2, x, COLS, 4, 4, y2 + 4, 0));
        EXPECT_OK(expq_view_gemv_rows(&v2, x, COLS, 4, ROWS, y2 + 4, ROWS - 4));
        for (r = 0; r < ROWS; r++) {
            CHECK(y2[r] == yv[r], "view gemv_rows y[%u] = %.9g, gemv %.9g", (unsigned)r,
                  y2[r], yv[r]);
        }

        /* Int8 activations: the view gives the tensor's int8 results exactly. */
        EXPECT_OK(expq_tensor_gemv_int8(t, x, COLS, y, ROWS));
        EXPECT_OK(expq_view_gemv_int8(&v, x, COLS, yv, ROWS));
        EXPECT_OK(expq_view_gemv_int8_rows(&v2, x, COLS, 1, ROWS, y2, ROWS - 1));
        for (r = 0; r < ROWS; r++) {
            CHECK(yv[r] == y[r], "view gemv_int8 y[%u] = %.9g, tensor %.9g", (unsigned)r,
                  yv[r], y[r]);
            if (r > 0) CHECK(y2[r - 1] == yv[r], "view gemv_int8_rows y[%u]", (unsigned)r);
        }

        /* Bad calls on a good view; outputs untouched. */
        for (i = 0; i < ROWS; i++) y2[i] = 42.0f;
        EXPECT(expq_view_dequantize(&v, deq3, ROWS * COLS - 1), EXPQ_STATUS_BUFFER_TOO_SMALL,
               NULL);
        EXPECT(expq_view_dequantize(&v, deq3, ROWS * COLS + 1), EXPQ_STATUS_INVALID_ARGUMENT,
               NULL);
        EXPECT(expq_view_gemv(&v, x, COLS - 1, y2, ROWS), EXPQ_STATUS_BUFFER_TOO_SMALL, "x");
        EXPECT(expq_view_gemv(&v, x, COLS, y2, ROWS - 1), EXPQ_STATUS_BUFFER_TOO_SMALL, "y");
        EXPECT(expq_view_gemv_rows(&v, x, COLS, 5, 3, y2, 0), EXPQ_STATUS_INVALID_ARGUMENT,
               "5..3");
        EXPECT(expq_view_gemv_rows(&v, x, COLS, 0, ROWS + 1, y2, ROWS),
               EXPQ_STATUS_INVALID_ARGUMENT, "0..8");
        EXPECT(expq_view_gemv(NULL, x, COLS, y2, ROWS), EXPQ_STATUS_NULL_POINTER, "`v`");
        EXPECT(expq_view_gemv(&v, NULL, COLS, y2, ROWS), EXPQ_STATUS_NULL_POINTER, "`x`");
        EXPECT(expq_view_dequantize(&v, NULL, 0), EXPQ_STATUS_NULL_POINTER, "out");
        /* Output inside the viewed bytes (malloc'd memory is aligned for float). */
        EXPECT(expq_view_gemv(&v, x, COLS, (float *)(void *)buf, ROWS),
               EXPQ_STATUS_INVALID_ARGUMENT, "overlap");
        for (i = 0; i < ROWS; i++) CHECK(y2[i] == 42.0f, "y2[%u] written", (unsigned)i);
    }
    EXPECT(expq_view_init(NULL, need, &v), EXPQ_STATUS_NULL_POINTER, "buf");
    EXPECT(expq_view_init(buf, need, NULL), EXPQ_STATUS_NULL_POINTER, "out");
    EXPECT(expq_tensor_deserialize(NULL, need, &out), EXPQ_STATUS_NULL_POINTER, "buf");
    EXPECT(expq_tensor_deserialize(buf, need, NULL), EXPQ_STATUS_NULL_POINTER, "out");
    CHECK(out == sentinel, "*out untouched");

    /* A zeroed struct is "not initialized". */
    memset(&zeroed, 0, sizeof zeroed);
    EXPECT(expq_view_dequantize(&zeroed, deq3, ROWS * COLS), EXPQ_STATUS_INVALID_ARGUMENT,
           "not initialized");
    CHECK(expq_view_rows(&zeroed) == 0 && expq_view_cols(&zeroed) == 0 &&
              expq_view_bits_per_weight(&zeroed) == 0.0 && expq_view_bits(&zeroed) == 0 &&
              expq_view_group_count(&zeroed) == 0 && expq_view_row_bytes(&zeroed) == 0 &&
              expq_view_rows(NULL) == 0 && expq_view_bits(NULL) == 0 &&
              expq_view_group_count(NULL) == 0 && expq_view_row_bytes(NULL) == 0,
          "accessors of an uninitialized or NULL view return 0");
    {
        const uint8_t *codes = NULL;
        size_t codes_len = 0, count = 0;
        float levels[EXPQ_MAX_LEVELS];
        EXPECT(expq_view_packed_codes(&zeroed, &codes, &codes_len),
               EXPQ_STATUS_INVALID_ARGUMENT, "not initialized");
        EXPECT(expq_view_group_levels(&zeroed, 0, levels, EXPQ_MAX_LEVELS, &count),
               EXPQ_STATUS_INVALID_ARGUMENT, "not initialized");
        EXPECT(expq_view_packed_codes(NULL, &codes, &codes_len), EXPQ_STATUS_NULL_POINTER,
               "`v`");
        CHECK(codes == NULL && codes_len == 0 && count == 0, "outputs written on failure");
    }

    /* Untrusted bytes. Each case in a buffer of exactly its length. */
    bad = copy_bytes(buf, need - 1);
    expect_rejected("truncated by one byte", bad, need - 1, EXPQ_STATUS_CORRUPT_DATA,
                    "truncated");
    free(bad);
    bad = copy_bytes(buf, 10);
    expect_rejected("truncated header", bad, 10, EXPQ_STATUS_CORRUPT_DATA, "truncated");
    free(bad);
    bad = copy_bytes(buf, need);
    expect_rejected("empty", bad, 0, EXPQ_STATUS_CORRUPT_DATA, "truncated");
    bad[EXPQ_HEADER_LEN + 5] ^= 0x10; /* a code byte: the checksum no longer matches */
    expect_rejected("flipped payload byte", bad, need, EXPQ_STATUS_CORRUPT_DATA, "checksum");
    bad[EXPQ_HEADER_LEN + 5] ^= 0x10;
    bad[need - 3] ^= 0x01; /* inside the last group's q */
    expect_rejected("flipped parameter byte", bad, need, EXPQ_STATUS_CORRUPT_DATA, "checksum");
    bad[need - 3] ^= 0x01;
    bad[4] = EXPQ_FORMAT_VERSION + 1; /* a future version, little-endian u16 at offset 4 */
    expect_rejected("version 3", bad, need, EXPQ_STATUS_UNSUPPORTED_VERSION, "version 3");
    bad[4] = 1;
    bad[0] = 'X'; /* magic */
    expect_rejected("bad magic", bad, need, EXPQ_STATUS_CORRUPT_DATA, "magic");
    bad[0] = 'E';
    bad[16] = 8; /* rows 7 -> 8: the lengths no longer add up */
    expect_rejected("row count lie", bad, need, EXPQ_STATUS_CORRUPT_DATA, NULL);
    bad[16] = 7;
    /* Unchanged again, it is accepted; with one byte too many it is not. */
    EXPECT_OK(expq_view_init(bad, need, &v2));
    free(bad);
    bad = (uint8_t *)malloc(need + 1);
    if (bad != NULL) {
        memcpy(bad, buf, need);
        bad[need] = 0;
        expect_rejected("trailing byte", bad, need + 1, EXPQ_STATUS_CORRUPT_DATA, "trailing");
        free(bad);
    }

    free(buf);
    expq_tensor_free(t);
}

/* Sum_j (Q[r,j] - W[r,j]) * mean_j, in double, from the dequantized matrix, and
 * sum_j |(Q - W) * mean_j| for the tolerance. `mean` holds `cols` (shared) or rows * cols
 * values. */
static double mean_shift(const float *q, const float *w, const float *mean, size_t mean_len,
                         size_t r, size_t cols, double *mag) {
    double s = 0.0;
    size_t j;
    *mag = 0.0;
    for (j = 0; j < cols; j++) {
        double m = mean[mean_len == cols ? j : r * cols + j];
        double term = ((double)q[r * cols + j] - (double)w[r * cols + j]) * m;
        s += term;
        *mag += fabs(term);
    }
    return s;
}

/* Checks bias_correction[r] == -sum_j (Q[r,j] - W[r,j]) mean_j, recomputed in C from the
 * tensor's dequantized values. The library subtracts in float and accumulates in double,
 * then rounds to float: |got - want| <= 1e-6 * sum_j |term_j| + 1e-7. */
static void check_corrections(const char *what, const expq_tensor *t, const float *w,
                              const float *mean, size_t mean_len, const float *bias,
                              size_t rows, size_t cols) {
    float *q = (float *)malloc(rows * cols * sizeof *q);
    size_t r;
    if (q == NULL) return;
    if (EXPECT_OK(expq_tensor_dequantize(t, q, rows * cols))) {
        for (r = 0; r < rows; r++) {
            double mag;
            double want = -mean_shift(q, w, mean, mean_len, r, cols, &mag);
            CHECK(close_to(bias[r], want, 1e-6 * mag + 1e-7),
                  "%s: bias_correction[%u] = %.9g, want %.9g", what, (unsigned)r, bias[r], want);
        }
    }
    free(q);
}

/* Quantization with input statistics: the bias correction and OUTPUT_MSE. */
static void test_calibrated(void) {
    /* The matrix of test_linear_levels_by_hand (3-bit linear, max-abs, per row), whose
     * quantized values are known exactly: Q - W per row is
     *   row 0: 0, 0, -0.1, 0, 0, -0.05, 0.1, 0.05                (step 0.3)
     *   row 1: 0, 7/30, 1/6, 0.2, 0.1, 7/30, -0.3, 1/6           (step 2/3)
     * so with mean_j = j + 1 the corrections -sum_j (Q - W) mean_j are -0.5 and -2.9. */
    enum { ROWS = 2, COLS = 8 };
    const float w[ROWS * COLS] = {
        0.9f, -0.3f, 0.1f, 0.0f, -0.6f, 0.35f, 0.2f, -0.05f,
        -2.0f, 1.1f, 0.5f, -0.2f, 1.9f, -0.9f, 0.3f, -1.5f,
    };
    const float mean[COLS] = {1, 2, 3, 4, 5, 6, 7, 8};
    float zeros[ROWS * COLS], per_row[ROWS * COLS], sq[COLS], q0[ROWS * COLS], q1[ROWS * COLS];
    float bias[ROWS + 1], nan_mean[COLS];
    expq_config config = expq_config_default(EXPQ_SCHEME_LINEAR, 3);
    expq_config c;
    expq_tensor *t = NULL, *plain = NULL;
    expq_tensor *const sentinel = (expq_tensor *)&config; /* never dereferenced */
    expq_tensor *out = sentinel;
    size_t i;

    for (i = 0; i < ROWS * COLS; i++) zeros[i] = 0.0f;
    for (i = 0; i < COLS; i++) sq[i] = 1.0f + 0.25f * (float)i;

    /* All-zero statistics: corrections exactly 0, tensor equal to expq_quantize's. */
    bias[0] = bias[1] = 42.0f;
    if (EXPECT_OK(expq_quantize_calibrated(w, ROWS, COLS, &config, zeros, COLS, zeros,
                                           ROWS * COLS, bias, ROWS, &t))) {
        CHECK(bias[0] == 0.0f && bias[1] == 0.0f, "zero statistics: corrections %g, %g",
              bias[0], bias[1]);
        if (EXPECT_OK(expq_quantize(w, ROWS, COLS, &config, &plain))) {
            EXPECT_OK(expq_tensor_dequantize(t, q0, ROWS * COLS));
            EXPECT_OK(expq_tensor_dequantize(plain, q1, ROWS * COLS));
            CHECK(same_bits(q0, q1, ROWS * COLS), "calibrated tensor differs from plain");
            expq_tensor_free(plain);
        }
        expq_tensor_free(t);
        t = NULL;
    }

    /* Shared means, without mean squares (NULL, its length ignored). */
    if (EXPECT_OK(expq_quantize_calibrated(w, ROWS, COLS, &config, mean, COLS, NULL, 999,
                                           bias, ROWS, &t))) {
        CHECK(close_to(bias[0], -0.5, 1e-5) && close_to(bias[1], -2.9, 1e-5),
              "hand-computed corrections: got %.9g, %.9g, want -0.5, -2.9", bias[0], bias[1]);
        check_corrections("shared means", t, w, mean, COLS, bias, ROWS, COLS);
        expq_tensor_free(t);
        t = NULL;
    }

    /* Per-row statistics (rows x cols values): row 1 sees other inputs than row 0. */
    for (i = 0; i < ROWS * COLS; i++) per_row[i] = (i < COLS) ? mean[i] : 0.5f * (float)(i % 5);
    if (EXPECT_OK(expq_quantize_calibrated(w, ROWS, COLS, &config, per_row, ROWS * COLS, NULL,
                                           0, bias, ROWS, &t))) {
        CHECK(close_to(bias[0], -0.5, 1e-5), "per-row statistics, row 0: %.9g", bias[0]);
        check_corrections("per-row means", t, w, per_row, ROWS * COLS, bias, ROWS, COLS);
        expq_tensor_free(t);
        t = NULL;
    }

    /* OUTPUT_MSE with mean squares: fitted scales, corrections still exact for its Q. */
    c = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 3);
    c.scale_rule = EXPQ_SCALE_RULE_OUTPUT_MSE;
    if (EXPECT_OK(expq_quantize_calibrated(w, ROWS, COLS, &c, mean, COLS, sq, COLS, bias, ROWS,
                                           &t))) {
        check_corrections("OUTPUT_MSE", t, w, mean, COLS, bias, ROWS, COLS);
        expq_tensor_free(t);
        t = NULL;
    }

    /* Failures: nothing written. */
    bias[0] = bias[1] = bias[2] = 42.0f;
    EXPECT(expq_quantize(w, ROWS, COLS, &c, &out), EXPQ_STATUS_INVALID_ARGUMENT, "E[x^2]");
    EXPECT(expq_quantize_calibrated(w, ROWS, COLS, &c, mean, COLS, NULL, COLS, bias, ROWS,
                                    &out),
           EXPQ_STATUS_INVALID_ARGUMENT, "E[x^2]");
    EXPECT(expq_quantize_calibrated(w, ROWS, COLS, &config, mean, COLS + 1, NULL, 0, bias,
                                    ROWS, &out),
           EXPQ_STATUS_INVALID_ARGUMENT, "input mean");
    EXPECT(expq_quantize_calibrated(w, ROWS, COLS, &config, mean, COLS - 1, NULL, 0, bias,
                                    ROWS, &out),
           EXPQ_STATUS_INVALID_ARGUMENT, "input mean");
    EXPECT(expq_quantize_calibrated(w, ROWS, COLS, &config, mean, COLS, sq, 3, bias, ROWS,
                                    &out),
           EXPQ_STATUS_INVALID_ARGUMENT, "mean square");
    memcpy(nan_mean, mean, sizeof nan_mean);
    nan_mean[5] = NAN;
    EXPECT(expq_quantize_calibrated(w, ROWS, COLS, &config, nan_mean, COLS, NULL, 0, bias,
                                    ROWS, &out),
           EXPQ_STATUS_NON_FINITE, "index 5");
    nan_mean[5] = INFINITY;
    EXPECT(expq_quantize_calibrated(w, ROWS, COLS, &config, mean, COLS, nan_mean, COLS, bias,
                                    ROWS, &out),
           EXPQ_STATUS_NON_FINITE, "index 5");
    nan_mean[5] = -1.0f; /* a negative mean square is a bad argument, not a non-finite one */
    EXPECT(expq_quantize_calibrated(w, ROWS, COLS, &config, mean, COLS, nan_mean, COLS, bias,
                                    ROWS, &out),
           EXPQ_STATUS_INVALID_ARGUMENT, "negative");
    EXPECT(expq_quantize_calibrated(w, ROWS, COLS, &config, mean, COLS, NULL, 0, bias,
                                    ROWS - 1, &out),
           EXPQ_STATUS_BUFFER_TOO_SMALL, "bias_correction");
    EXPECT(expq_quantize_calibrated(w, ROWS, COLS, &config, mean, COLS, NULL, 0, bias,
                                    ROWS + 1, &out),
           EXPQ_STATUS_INVALID_ARGUMENT, "bias_correction");
    EXPECT(expq_quantize_calibrated(w, ROWS, COLS, &config, NULL, COLS, NULL, 0, bias, ROWS,
                                    &out),
           EXPQ_STATUS_NULL_POINTER, "input_mean");
    EXPECT(expq_quantize_calibrated(w, ROWS, COLS, &config, mean, COLS, NULL, 0, NULL, ROWS,
                                    &out),
           EXPQ_STATUS_NULL_POINTER, "bias_correction");
    EXPECT(expq_quantize_calibrated(w, ROWS, COLS, &config, mean, COLS, NULL, 0, bias, ROWS,
                                    NULL),
           EXPQ_STATUS_NULL_POINTER, "out");
    EXPECT(expq_quantize_calibrated(w, ROWS, 0, &config, mean, COLS, NULL, 0, bias, ROWS,
                                    &out),
           EXPQ_STATUS_INVALID_ARGUMENT, NULL);
    EXPECT(expq_quantize_calibrated(w, ROWS, COLS, &config, per_row, COLS, NULL, 0,
                                    per_row + 1, ROWS, &out),
           EXPQ_STATUS_INVALID_ARGUMENT, "overlap");
    CHECK(bias[0] == 42.0f && bias[1] == 42.0f && bias[2] == 42.0f,
          "bias_correction written on failure");
    CHECK(out == sentinel, "*out written on failure");
}

/* Data-free statistics of ReLU(N(beta, gamma^2)) and ReLU6. */
static void test_relu_moments(void) {
    float m = -1.0f, s = -1.0f;
    /* Half-normal: E[y] = 1/sqrt(2 pi), E[y^2] = 1/2; the closed form is accurate to 1e-7,
     * the float result to 6e-8 relative. */
    if (EXPECT_OK(expq_relu_moments(0.0f, 1.0f, INFINITY, &m, &s))) {
        CHECK(close_to(m, 0.3989422804014327, 1e-6), "mean %.9g", m);
        CHECK(close_to(s, 0.5, 1e-6), "mean square %.9g", s);
    }
    /* No spread: the point mass at clamp(beta, 0, clip). */
    if (EXPECT_OK(expq_relu_moments(7.5f, 0.0f, 6.0f, &m, &s))) {
        CHECK(m == 6.0f && s == 36.0f, "ReLU6 of 7.5: %g, %g", m, s);
    }
    /* ReLU6 clips: smaller than ReLU's moments for the same input. */
    if (EXPECT_OK(expq_relu_moments(5.0f, 2.0f, 6.0f, &m, &s))) {
        CHECK(m > 4.0f && m < 5.0f && s < 36.0f, "ReLU6 moments %g, %g", m, s);
    }
    m = s = -1.0f;
    EXPECT(expq_relu_moments(0.0f, 1.0f, 0.0f, &m, &s), EXPQ_STATUS_INVALID_ARGUMENT, "clip");
    EXPECT(expq_relu_moments(NAN, 1.0f, 6.0f, &m, &s), EXPQ_STATUS_INVALID_ARGUMENT, "beta");
    EXPECT(expq_relu_moments(0.0f, INFINITY, 6.0f, &m, &s), EXPQ_STATUS_INVALID_ARGUMENT,
           "gamma");
    EXPECT(expq_relu_moments(0.0f, 1.0f, 6.0f, NULL, &s), EXPQ_STATUS_NULL_POINTER, "mean");
    EXPECT(expq_relu_moments(0.0f, 1.0f, 6.0f, &m, NULL), EXPQ_STATUS_NULL_POINTER, "sq_mean");
    CHECK(m == -1.0f && s == -1.0f, "outputs written on failure");
}

/* The numeric edges: weights near the top of float and subnormal weights quantize to finite
 * values near them; outputs that would overflow float and impossible lengths are errors whose
 * message names the real cause. */
static void test_numeric_edges(void) {
    const float huge[4] = {3e38f, -1e38f, 5e37f, 0.0f};
    const float tiny[4] = {1e-44f, -1e-44f, 0.0f, 1e-45f};
    const float big_mean[4] = {3e38f, 3e38f, 3e38f, 3e38f};
    float out_values[4];
    float bias[1];
    float m = -1.0f, s = -1.0f;
    float x[2] = {1.0f, 1.0f};
    float levels[2] = {-1.0f, 1.0f};
    uint8_t packed[1] = {0};
    expq_tensor *t = NULL;
    expq_config c;
    size_t i;

    /* A scale fitted above FLT_MAX is clamped to it, never replaced. */
    c = expq_config_default(EXPQ_SCHEME_LINEAR, 8);
    c.scale_rule = EXPQ_SCALE_RULE_MSE;
    if (EXPECT_OK(expq_quantize(huge, 1, 4, &c, &t))) {
        if (EXPECT_OK(expq_tensor_dequantize(t, out_values, 4))) {
            for (i = 0; i < 4; i++) {
                CHECK(isfinite(out_values[i]), "huge weight %u decodes to %g", (unsigned)i,
                      out_values[i]);
                CHECK(fabs((double)out_values[i] - (double)huge[i]) <= 0.02 * 3e38,
                      "huge weight %u: %g for %g", (unsigned)i, out_values[i], huge[i]);
            }
        }
        expq_tensor_free(t);
        t = NULL;
    }
    c = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 4);
    c.scale_rule = EXPQ_SCALE_RULE_CORRELATION;
    if (EXPECT_OK(expq_quantize(huge, 1, 4, &c, &t))) {
        if (EXPECT_OK(expq_tensor_dequantize(t, out_values, 4))) {
            CHECK(out_values[0] > 1e38f && out_values[1] < 0.0f && out_values[3] == 0.0f,
                  "correlation fit of huge weights: %g %g %g %g", out_values[0],
                  out_values[1], out_values[2], out_values[3]);
        }
        expq_tensor_free(t);
        t = NULL;
    }

    /* Subnormal-only rows quantize like zero rows. */
    c = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 4);
    if (EXPECT_OK(expq_quantize(tiny, 2, 2, &c, &t))) {
        if (EXPECT_OK(expq_tensor_dequantize(t, out_values, 4))) {
            for (i = 0; i < 4; i++) {
                CHECK(out_values[i] == 0.0f, "subnormal weight %u decodes to %g", (unsigned)i,
                      out_values[i]);
            }
        }
        expq_tensor_free(t);
        t = NULL;
    }

    /* A scale given as 1e-44 is named in short form. */
    c.scale_rule = EXPQ_SCALE_RULE_FIXED;
    c.fixed_a = (double)1e-44f;
    c.fixed_q = 0.5;
    EXPECT(expq_quantize(huge, 2, 2, &c, &t), EXPQ_STATUS_INVALID_ARGUMENT, "a = 1e-44, q = 0.5");

    /* Outputs beyond FLT_MAX from finite inputs. */
    EXPECT(expq_relu_moments(1e30f, 1e-30f, INFINITY, &m, &s), EXPQ_STATUS_NON_FINITE,
           "beta = 1e30");
    CHECK(m == -1.0f && s == -1.0f, "moments written on failure");
    c = expq_config_default(EXPQ_SCHEME_LINEAR, 2);
    bias[0] = 42.0f;
    EXPECT(expq_quantize_calibrated(huge, 1, 4, &c, big_mean, 4, NULL, 0, bias, 1, &t),
           EXPQ_STATUS_NON_FINITE, "bias correction of row 0");
    CHECK(bias[0] == 42.0f && t == NULL, "outputs written on failure");

    /* Impossible lengths are named as such, not as overlaps or short buffers. */
    c = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 4);
    EXPECT(expq_quantize(huge, SIZE_MAX, 2, &c, &t), EXPQ_STATUS_INVALID_ARGUMENT, "overflows");
    EXPECT(expq_quantize_calibrated(huge, SIZE_MAX, 2, &c, big_mean, 2, NULL, 0, bias, 1, &t),
           EXPQ_STATUS_INVALID_ARGUMENT, "overflows");
    EXPECT(expq_decode(1, packed, 1, levels, 2, out_values, SIZE_MAX),
           EXPQ_STATUS_INVALID_ARGUMENT, "larger than any object");
    if (EXPECT_OK(expq_quantize(huge, 2, 2, &c, &t))) {
        EXPECT(expq_tensor_gemv(t, x, 2, out_values, SIZE_MAX), EXPQ_STATUS_INVALID_ARGUMENT,
               "`y` has a length larger than any object");
        expq_tensor_free(t);
        t = NULL;
    }
}

/* Every status except PANIC has been provoked from C by now. PANIC needs a bug; the Rust
 * unit test ffi::tests::a_panic_is_caught_and_reported covers the panic boundary. */
static void check_every_status_seen(void) {
    int i;
    for (i = 0; i < 8; i++) {
        if (i == EXPQ_STATUS_PANIC) continue;
        CHECK(seen[i], "status %s never provoked", status_name((expq_status)i));
    }
}

int main(void) {
    test_enums_and_version();
    test_linear_levels_by_hand();
    test_fixed_exponential_exact();
    test_gemv();
    test_gemm();
    test_decode_hand_packed();
    test_errors();
    test_storage();
    test_calibrated();
    test_relu_moments();
    test_numeric_edges();
    check_every_status_seen();
    if (failures != 0) {
        fprintf(stderr, "test_expquant (C): %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_expquant (C): all checks passed (expquant %s, %s)\n", expq_version(),
           expq_simd_path());
    return 0;
}
