/* The C container API: build (size query, then write), open in place in every verification
 * mode, count, find, iterate names, get tensors as expq_view and f32 arrays in place or
 * copied; corrupt and truncated containers; the same status, ownership and last-error rules
 * as the rest of the API. Writes the container it built to "<argv[0]>.container", which
 * tests/c_abi.rs compares with the one Rust's write_container writes for the same entries.
 * C99; run under valgrind and AddressSanitizer by CI. */
#include "expquant.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static char last_message[512];

/* Checks that `got` is `want`; for a failure also that the last error message contains
 * `needle` (if not NULL). Returns whether the status matched. */
static int expect_at(int line, const char *what, expq_status got, expq_status want,
                     const char *needle) {
    last_message[0] = '\0';
    if (got != want) {
        expq_last_error_message(last_message, sizeof last_message);
        fprintf(stderr, "%s:%d: %s returned %d, expected %d (%s)\n", __FILE__, line, what,
                (int)got, (int)want, last_message);
        failures++;
        return 0;
    }
    if (want != EXPQ_STATUS_OK) {
        size_t len = expq_last_error_message(last_message, sizeof last_message);
        if (len == 0 || (needle != NULL && strstr(last_message, needle) == NULL)) {
            fprintf(stderr, "%s:%d: %s: message \"%s\" does not mention \"%s\"\n", __FILE__,
                    line, what, last_message, needle ? needle : "(anything)");
            failures++;
            return 0;
        }
    }
    return 1;
}

#define EXPECT(call, want, needle) expect_at(__LINE__, #call, (call), (want), (needle))
#define EXPECT_OK(call) EXPECT(call, EXPQ_STATUS_OK, NULL)

/* The entries tests/c_abi.rs rebuilds in Rust: keep the two in step. Values are exact
 * binary fractions, so C and Rust compute the same floats. */
#define W_ROWS 6
#define W_COLS 40
#define B_LEN 6

static float weight_value(size_t i) { return (float)((long)((i * 37u) % 101u) - 50) / 64.0f; }
static float bias_value(size_t i) { return (float)i * 0.25f - 0.5f; }

static uint8_t *build(size_t *len, expq_tensor **weight_out) {
    float w[W_ROWS * W_COLS], bias[B_LEN];
    size_t i, needed = 0, written = 0;
    expq_tensor *weight = NULL;
    expq_container_builder *b = NULL;
    uint8_t *buf;
    expq_config config = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 4);

    for (i = 0; i < W_ROWS * W_COLS; i++) w[i] = weight_value(i);
    for (i = 0; i < B_LEN; i++) bias[i] = bias_value(i);
    if (!EXPECT_OK(expq_quantize(w, W_ROWS, W_COLS, &config, &weight))) exit(1);
    if (!EXPECT_OK(expq_container_builder_new(&b))) exit(1);
    /* Added out of name order: the container sorts them. */
    EXPECT_OK(expq_container_builder_add_tensor(b, (const uint8_t *)"fc.weight", 9, weight));
    EXPECT_OK(expq_container_builder_add_f32(b, (const uint8_t *)"fc.bias", 7, bias, B_LEN, 1,
                                             B_LEN));
    /* Bad additions add nothing. */
    EXPECT(expq_container_builder_add_f32(b, (const uint8_t *)"fc.bias", 7, bias, B_LEN, 1, B_LEN),
           EXPQ_STATUS_INVALID_ARGUMENT, "unique");
    EXPECT(expq_container_builder_add_f32(b, (const uint8_t *)"x", 1, bias, B_LEN, 4, 2),
           EXPQ_STATUS_INVALID_ARGUMENT, "does not match");
    EXPECT(expq_container_builder_add_f32(b, (const uint8_t *)"x", 1, bias, 0, 0, 1),
           EXPQ_STATUS_INVALID_ARGUMENT, "empty");
    EXPECT(expq_container_builder_add_tensor(b, (const uint8_t *)"", 0, weight),
           EXPQ_STATUS_INVALID_ARGUMENT, "1 to 1024");
    EXPECT(expq_container_builder_add_tensor(b, (const uint8_t *)"\xff", 1, weight),
           EXPQ_STATUS_INVALID_ARGUMENT, "UTF-8");
    EXPECT(expq_container_builder_add_tensor(NULL, (const uint8_t *)"y", 1, weight),
           EXPQ_STATUS_NULL_POINTER, "`b`");
    EXPECT(expq_container_builder_add_tensor(b, (const uint8_t *)"y", 1, NULL),
           EXPQ_STATUS_NULL_POINTER, "`t`");

    /* Size query, then write. */
    EXPECT(expq_container_builder_write(b, NULL, 0, &needed), EXPQ_STATUS_BUFFER_TOO_SMALL,
           NULL);
    CHECK(needed > 0, "needed %zu", needed);
    buf = (uint8_t *)malloc(needed);
    if (buf == NULL) exit(1);
    EXPECT(expq_container_builder_write(b, buf, needed - 1, &written),
           EXPQ_STATUS_BUFFER_TOO_SMALL, NULL);
    CHECK(written == needed, "size query on a short buffer gave %zu", written);
    written = 0;
    EXPECT_OK(expq_container_builder_write(b, buf, needed, &written));
    CHECK(written == needed, "wrote %zu of %zu", written, needed);
    EXPECT(expq_container_builder_write(b, buf, needed, NULL), EXPQ_STATUS_NULL_POINTER, NULL);
    expq_container_builder_free(b);
    expq_container_builder_free(NULL);
    *len = written;
    *weight_out = weight;
    return buf;
}

static void read_back(const uint8_t *buf, size_t len, const expq_tensor *weight,
                      expq_verification mode) {
    expq_container_view c, zeroed;
    expq_view v;
    expq_entry_kind kind;
    size_t count = 0, index = 99, name_len = 0, rows = 0, cols = 0, i;
    const uint8_t *name = NULL;
    const float *in_place = NULL;
    bool found = false;
    float bias[B_LEN], x[W_COLS], y[W_ROWS], y_ref[W_ROWS];
    float deq[W_ROWS * W_COLS], deq_ref[W_ROWS * W_COLS];

    if (!EXPECT_OK(expq_container_view_init(buf, len, mode, &c))) return;
    EXPECT_OK(expq_container_view_count(&c, &count));
    CHECK(count == 2, "count %zu", count);

    /* Iterate names: sorted. */
    EXPECT_OK(expq_container_view_name(&c, 0, &name, &name_len));
    CHECK(name_len == 7 && memcmp(name, "fc.bias", 7) == 0, "name 0 is %.*s", (int)name_len,
          (const char *)name);
    CHECK(name >= buf && name + name_len <= buf + len, "name points into the buffer");
    EXPECT_OK(expq_container_view_name(&c, 1, &name, &name_len));
    CHECK(name_len == 9 && memcmp(name, "fc.weight", 9) == 0, "name 1");
    EXPECT(expq_container_view_name(&c, 2, &name, &name_len), EXPQ_STATUS_INVALID_ARGUMENT,
           "entry 2 does not exist");

    /* Find. */
    EXPECT_OK(expq_container_view_find(&c, (const uint8_t *)"fc.weight", 9, &index, &found));
    CHECK(found && index == 1, "found %d index %zu", (int)found, index);
    index = 99;
    EXPECT_OK(expq_container_view_find(&c, (const uint8_t *)"fc.weigh", 8, &index, &found));
    CHECK(!found && index == 99, "a missing name: found %d, index %zu", (int)found, index);

    /* The tensor as an expq_view: equal to the tensor it came from. */
    EXPECT_OK(expq_container_view_kind(&c, 1, &kind));
    CHECK(kind == EXPQ_ENTRY_KIND_QUANTIZED, "kind %d", (int)kind);
    if (EXPECT_OK(expq_container_view_tensor(&c, 1, &v))) {
        for (i = 0; i < W_COLS; i++) x[i] = (float)i / 8.0f - 2.0f;
        EXPECT_OK(expq_view_gemv(&v, x, W_COLS, y, W_ROWS));
        EXPECT_OK(expq_tensor_gemv(weight, x, W_COLS, y_ref, W_ROWS));
        for (i = 0; i < W_ROWS; i++) {
            CHECK(y[i] - y_ref[i] < 1e-4f && y_ref[i] - y[i] < 1e-4f, "y[%zu] %g vs %g", i,
                  (double)y[i], (double)y_ref[i]);
        }
        EXPECT_OK(expq_view_dequantize(&v, deq, W_ROWS * W_COLS));
        EXPECT_OK(expq_tensor_dequantize(weight, deq_ref, W_ROWS * W_COLS));
        CHECK(memcmp(deq, deq_ref, sizeof deq) == 0, "dequantized values differ");
    }
    EXPECT(expq_container_view_tensor(&c, 0, &v), EXPQ_STATUS_INVALID_ARGUMENT, "f32 array");

    /* The f32 array, in place and copied. */
    EXPECT_OK(expq_container_view_kind(&c, 0, &kind));
    CHECK(kind == EXPQ_ENTRY_KIND_F32, "kind %d", (int)kind);
    if (EXPECT_OK(expq_container_view_f32(&c, 0, &in_place, &rows, &cols))) {
        CHECK(rows == 1 && cols == B_LEN, "shape %zu x %zu", rows, cols);
        CHECK((const uint8_t *)in_place >= buf && (const uint8_t *)(in_place + B_LEN) <= buf + len,
              "the values are in the buffer");
        for (i = 0; i < B_LEN; i++) CHECK(in_place[i] == bias_value(i), "bias[%zu]", i);
    }
    EXPECT_OK(expq_container_view_f32_copy(&c, 0, bias, B_LEN));
    for (i = 0; i < B_LEN; i++) CHECK(bias[i] == bias_value(i), "copied bias[%zu]", i);
    EXPECT(expq_container_view_f32_copy(&c, 0, bias, B_LEN - 1), EXPQ_STATUS_BUFFER_TOO_SMALL,
           NULL);
    EXPECT(expq_container_view_f32(&c, 1, &in_place, &rows, &cols),
           EXPQ_STATUS_INVALID_ARGUMENT, "quantized tensor");

    /* NULLs and a zeroed struct. */
    memset(&zeroed, 0, sizeof zeroed);
    EXPECT(expq_container_view_count(&zeroed, &count), EXPQ_STATUS_INVALID_ARGUMENT,
           "not initialized");
    EXPECT(expq_container_view_count(NULL, &count), EXPQ_STATUS_NULL_POINTER, NULL);
    EXPECT(expq_container_view_count(&c, NULL), EXPQ_STATUS_NULL_POINTER, NULL);
    EXPECT(expq_container_view_find(&c, NULL, 0, &index, &found), EXPQ_STATUS_NULL_POINTER,
           NULL);
}

static void misaligned_f32(const uint8_t *buf, size_t len) {
    /* The same bytes one byte off: the in-place accessor declines, the copy works. */
    uint8_t *shifted = (uint8_t *)malloc(len + 1);
    expq_container_view c;
    const float *in_place = NULL;
    size_t rows, cols;
    float bias[B_LEN];
    if (shifted == NULL) exit(1);
    memcpy(shifted + 1, buf, len);
    if (EXPECT_OK(expq_container_view_init(shifted + 1, len, EXPQ_VERIFICATION_FULL, &c))) {
        EXPECT(expq_container_view_f32(&c, 0, &in_place, &rows, &cols),
               EXPQ_STATUS_INVALID_ARGUMENT, "aligned");
        EXPECT_OK(expq_container_view_f32_copy(&c, 0, bias, B_LEN));
        CHECK(bias[B_LEN - 1] == bias_value(B_LEN - 1), "copied from a misaligned buffer");
    }
    free(shifted);
}

static void corrupt_and_truncated(const uint8_t *buf, size_t len) {
    uint8_t *copy = (uint8_t *)malloc(len);
    expq_container_view c;
    expq_view v;
    size_t cut, at, rejected = 0, count;
    float x[W_COLS] = {0}, y[W_ROWS], bias[B_LEN];
    unsigned mode;
    if (copy == NULL) exit(1);

    /* Every truncation fails in every mode, and only in the documented way. */
    for (mode = 0; mode < 3; mode++) {
        for (cut = 0; cut < len; cut++) {
            expq_status s = expq_container_view_init(buf, cut, (expq_verification)mode, &c);
            CHECK(s == EXPQ_STATUS_CORRUPT_DATA, "mode %u cut %zu gave %d", mode, cut, (int)s);
        }
    }
    /* Every single-bit flip is rejected by a full open, or harmless. */
    for (at = 0; at < len; at++) {
        memcpy(copy, buf, len);
        copy[at] ^= 0x04;
        for (mode = 0; mode < 3; mode++) {
            expq_status s = expq_container_view_init(copy, len, (expq_verification)mode, &c);
            if (s != EXPQ_STATUS_OK) {
                CHECK(s == EXPQ_STATUS_CORRUPT_DATA || s == EXPQ_STATUS_UNSUPPORTED_VERSION,
                      "flip at %zu gave %d", at, (int)s);
                if (mode == 0) rejected++;
                continue;
            }
            /* Accepted (Lazy and Trusted defer the entries): using it never crashes. */
            expq_container_view_count(&c, &count);
            if (expq_container_view_tensor(&c, 1, &v) == EXPQ_STATUS_OK) {
                expq_view_gemv(&v, x, W_COLS, y, W_ROWS);
            }
            expq_container_view_f32_copy(&c, 0, bias, B_LEN);
        }
    }
    /* Padding bytes between entries carry no meaning; everything else is checked. */
    CHECK(rejected * 10 > len * 8, "full open rejected only %zu of %zu flips", rejected, len);
    /* A bad mode value. */
    EXPECT(expq_container_view_init(buf, len, (expq_verification)7, &c),
           EXPQ_STATUS_INVALID_ARGUMENT, "mode");
    /* Not a container. */
    memset(copy, 0, len);
    EXPECT(expq_container_view_init(copy, len, EXPQ_VERIFICATION_FULL, &c),
           EXPQ_STATUS_CORRUPT_DATA, "magic");
    EXPECT(expq_container_view_init(NULL, len, EXPQ_VERIFICATION_FULL, &c),
           EXPQ_STATUS_NULL_POINTER, NULL);
    free(copy);
}

int main(int argc, char **argv) {
    size_t len = 0;
    expq_tensor *weight = NULL;
    uint8_t *buf = build(&len, &weight);
    char path[4096];
    FILE *f;

    read_back(buf, len, weight, EXPQ_VERIFICATION_FULL);
    read_back(buf, len, weight, EXPQ_VERIFICATION_LAZY);
    read_back(buf, len, weight, EXPQ_VERIFICATION_TRUSTED);
    misaligned_f32(buf, len);
    corrupt_and_truncated(buf, len);

    if (argc > 0 && strlen(argv[0]) + 16 < sizeof path) {
        sprintf(path, "%s.container", argv[0]);
        f = fopen(path, "wb");
        CHECK(f != NULL, "cannot write %s", path);
        if (f != NULL) {
            CHECK(fwrite(buf, 1, len, f) == len, "short write to %s", path);
            fclose(f);
        }
    }
    free(buf);
    expq_tensor_free(weight);
    if (failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
