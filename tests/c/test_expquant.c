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

#include "expquant.h"

static int failures = 0;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                   \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            failures++;                                                       \
        }                                                                     \
    } while (0)

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

/* Which statuses have been provoked from C; every one except the two that cannot be yet. */
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
    CHECK(v != NULL && v[0] >= '0' && v[0] <= '9', "version \"%s\"", v ? v : "(null)");
    CHECK(strchr(v, '.') != NULL, "version \"%s\" has no dot", v);

    CHECK(EXPQ_STATUS_OK == 0 && EXPQ_STATUS_NULL_POINTER == 1 &&
              EXPQ_STATUS_INVALID_ARGUMENT == 2 && EXPQ_STATUS_NON_FINITE == 3 &&
              EXPQ_STATUS_BUFFER_TOO_SMALL == 4 && EXPQ_STATUS_CORRUPT_DATA == 5 &&
              EXPQ_STATUS_UNSUPPORTED_VERSION == 6 && EXPQ_STATUS_PANIC == 7,
          "status numbers are permanent");
    CHECK(EXPQ_SCHEME_LINEAR == 0 && EXPQ_SCHEME_EXPONENTIAL == 1, "scheme numbers");
    CHECK(EXPQ_SCALE_RULE_MAX_ABS == 0 && EXPQ_SCALE_RULE_MSE == 1 &&
              EXPQ_SCALE_RULE_CORRELATION == 2 && EXPQ_SCALE_RULE_FIXED == 3,
          "scale rule numbers");
    CHECK(EXPQ_GRANULARITY_PER_TENSOR == 0 && EXPQ_GRANULARITY_PER_ROW == 1 &&
              EXPQ_GRANULARITY_PER_GROUP == 2,
          "granularity numbers");
    CHECK(EXPQ_MAX_LEVELS == 256, "EXPQ_MAX_LEVELS = %d", (int)EXPQ_MAX_LEVELS);

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
    EXPECT(expq_tensor_packed_codes(t, &codes, NULL), EXPQ_STATUS_NULL_POINTER, "len");
    EXPECT(expq_tensor_group_levels(t, 0, NULL, 16, &len), EXPQ_STATUS_NULL_POINTER, "levels");
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
        CHECK(expq_last_error_message(NULL, 100) == full, "NULL buf with cap");
        CHECK(expq_last_error_message(small, 0) == full, "cap 0");
    }

    expq_tensor_free(t);

    for (i = 0; i < 8; i++) {
        /* UNSUPPORTED_VERSION is reserved for the stored format (not written yet) and PANIC
         * needs a bug; the Rust unit test ffi::tests::a_panic_is_caught_and_reported
         * covers the panic boundary. */
        if (i == EXPQ_STATUS_UNSUPPORTED_VERSION || i == EXPQ_STATUS_PANIC) continue;
        CHECK(seen[i], "status %s never provoked", status_name((expq_status)i));
    }
}

int main(void) {
    test_enums_and_version();
    test_linear_levels_by_hand();
    test_fixed_exponential_exact();
    test_gemv();
    test_decode_hand_packed();
    test_errors();
    if (failures != 0) {
        fprintf(stderr, "test_expquant (C): %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_expquant (C): all checks passed (expquant %s)\n", expq_version());
    return 0;
}
