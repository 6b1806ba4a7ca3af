/* The stored digits CNN (data/digits_cnn_exp4.exq) on a Cortex-M4F, in C, through the
 * allocation-free C API of libexpquant_nostd.a: the container and the test images sit in
 * flash (blobs.S), the container is opened in place, every weight matrix stays packed and is
 * multiplied with expq_view_gemv (a convolution is im2col, then one GEMV per output
 * position), the biases are read in place as f32 entries, and every buffer is static. No
 * heap, no C library I/O: output goes through semihosting.
 *
 * A C port of examples/cpp/digits_cnn.cpp with the same arithmetic, so it predicts what the
 * host predicts. Prints the prediction of every image and top-1, which
 * scripts/check_firmware_c.sh compares with `cargo run --example export_model -- predict`. */
#define EXPQ_NO_STD
#include "expquant.h"

#include <stddef.h>
#include <stdint.h>

#include "semihosting.h"

extern const uint8_t model_container[], model_container_end[];
extern const uint8_t test_images[], test_images_end[];

enum {
    SIDE = 8,
    PIXELS = SIDE * SIDE,
    RECORD = PIXELS + 1, /* 64 pixel bytes (0..=16) and a label byte (data/README.md) */
    CLASSES = 10,
    IMAGES = 360, /* all of data/digits_test.bin */
    C1 = 16,
    C2 = 32,
    C3 = 32,
    HIDDEN = 32,
    MAX_K = C2 * 9,             /* longest im2col column (conv3) */
    MAX_COLS = C1 * 9 * PIXELS, /* largest im2col matrix (conv2) */
};

/* ---- Output: a line buffer flushed through semihosting. ---- */

static char line[256];
static size_t line_len;

static void flush(void) {
    line[line_len] = '\0';
    semihost_write(line);
    line_len = 0;
}

static void put_str(const char *s) {
    for (; *s; ++s) {
        if (line_len + 1 >= sizeof line) flush();
        line[line_len++] = *s;
    }
}

static void put_uint(size_t v) {
    char digits[24];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    char text[24];
    for (size_t i = 0; i < n; ++i) text[i] = digits[n - 1 - i];
    text[n] = '\0';
    put_str(text);
}

/* Reports a failed call with the library's message and ends the run. */
static void fail(const char *what, expq_status status) {
    char message[128];
    expq_last_error_message(message, sizeof message);
    put_str("error: ");
    put_str(what);
    put_str(" (status ");
    put_uint((size_t)status);
    put_str("): ");
    put_str(message);
    put_str("\n");
    flush();
    semihost_exit(0);
}

static void check(expq_status status, const char *what) {
    if (status != EXPQ_STATUS_OK) fail(what, status);
}

/* ---- The model. ---- */

/* One layer: its packed weights and its biases, both borrowed from the container in flash. */
typedef struct {
    expq_view weight;
    const float *bias;
    size_t rows, cols;
} layer;

static size_t length(const char *s) {
    size_t n = 0;
    while (s[n]) ++n;
    return n;
}

static size_t find(const expq_container_view *c, const char *name) {
    size_t index = 0;
    bool found = false;
    check(expq_container_view_find(c, (const uint8_t *)name, length(name), &index, &found), name);
    if (!found) {
        put_str("error: the container has no entry ");
        put_str(name);
        put_str("\n");
        flush();
        semihost_exit(0);
    }
    return index;
}

static void open_layer(const expq_container_view *c, const char *weight, const char *bias,
                       size_t rows, size_t cols, layer *l) {
    check(expq_container_view_tensor(c, find(c, weight), &l->weight), weight);
    l->rows = expq_view_rows(&l->weight);
    l->cols = expq_view_cols(&l->weight);
    size_t b_rows = 0, b_cols = 0;
    check(expq_container_view_f32(c, find(c, bias), &l->bias, &b_rows, &b_cols), bias);
    if (l->rows != rows || l->cols != cols || b_rows * b_cols != rows) {
        put_str("error: ");
        put_str(weight);
        put_str(" has the wrong shape\n");
        flush();
        semihost_exit(0);
    }
}

/* ---- The forward pass (static scratch; the same operations as digits_cnn.cpp). ---- */

static float patches[MAX_COLS];
static float column[MAX_K];
static float y[C3];

/* The (ch·9) × (side·side) patch matrix of a 3×3, stride-1, zero-padded convolution. */
static void im2col3x3(const float *in, size_t ch, size_t side) {
    const size_t plane = side * side;
    for (size_t c = 0; c < ch; ++c)
        for (size_t ky = 0; ky < 3; ++ky)
            for (size_t kx = 0; kx < 3; ++kx) {
                float *dst = &patches[(c * 9 + ky * 3 + kx) * plane];
                for (size_t py = 0; py < side; ++py)
                    for (size_t px = 0; px < side; ++px) {
                        const size_t sy = py + ky, sx = px + kx; /* source pixel + (1, 1) */
                        dst[py * side + px] = sy >= 1 && sy <= side && sx >= 1 && sx <= side
                                                  ? in[c * plane + (sy - 1) * side + (sx - 1)]
                                                  : 0.0f;
                    }
            }
}

/* out[o, p] = bias[o] + W[o, :] · patch(p), one GEMV per output position p; then ReLU. */
static void conv_relu(const layer *l, const float *in, size_t ch, size_t side, float *out) {
    im2col3x3(in, ch, side);
    const size_t n = side * side;
    for (size_t p = 0; p < n; ++p) {
        for (size_t j = 0; j < l->cols; ++j) column[j] = patches[j * n + p];
        check(expq_view_gemv(&l->weight, column, l->cols, y, l->rows), "gemv");
        for (size_t o = 0; o < l->rows; ++o) {
            const float v = y[o] + l->bias[o];
            out[o * n + p] = v > 0.0f ? v : 0.0f;
        }
    }
}

static void dense(const layer *l, const float *in, float *out, bool relu) {
    check(expq_view_gemv(&l->weight, in, l->cols, out, l->rows), "gemv");
    for (size_t o = 0; o < l->rows; ++o) {
        out[o] += l->bias[o];
        if (relu) out[o] = out[o] > 0.0f ? out[o] : 0.0f;
    }
}

/* 2×2 stride-2 max pooling; ties keep the first candidate in row-major order. */
static void maxpool2(const float *in, size_t ch, size_t side, float *out) {
    const size_t half = side / 2;
    for (size_t c = 0; c < ch; ++c)
        for (size_t py = 0; py < half; ++py)
            for (size_t px = 0; px < half; ++px) {
                const size_t base = c * side * side + 2 * py * side + 2 * px;
                const size_t others[3] = {base + 1, base + side, base + side + 1};
                float best = in[base];
                for (size_t k = 0; k < 3; ++k)
                    if (in[others[k]] > best) best = in[others[k]];
                out[c * half * half + py * half + px] = best;
            }
}

/* Index of the largest logit; ties go to the lowest index. */
static size_t argmax(const float *v, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; ++i)
        if (v[i] > v[best]) best = i;
    return best;
}

static float x[PIXELS], a1[C1 * PIXELS], a2[C2 * PIXELS], pooled[C2 * PIXELS / 4];
static float a3[C3 * PIXELS / 4], h[HIDDEN], logits[CLASSES];

int main(void) {
    expq_container_view c;
    check(expq_container_view_init(model_container,
                                   (size_t)(model_container_end - model_container),
                                   EXPQ_VERIFICATION_FULL, &c),
          "open container");
    layer conv1, conv2, conv3, fc1, fc2;
    open_layer(&c, "conv1.weight", "conv1.bias", C1, 9, &conv1);
    open_layer(&c, "conv2.weight", "conv2.bias", C2, C1 * 9, &conv2);
    open_layer(&c, "conv3.weight", "conv3.bias", C3, C2 * 9, &conv3);
    open_layer(&c, "fc1.weight", "fc1.bias", HIDDEN, C3 * PIXELS / 4, &fc1);
    open_layer(&c, "fc2.weight", "fc2.bias", CLASSES, HIDDEN, &fc2);

    const size_t available = (size_t)(test_images_end - test_images) / RECORD;
    const size_t count = available < IMAGES ? available : IMAGES;
    size_t correct = 0;
    put_str("predictions:");
    for (size_t i = 0; i < count; ++i) {
        const uint8_t *rec = &test_images[i * RECORD];
        for (size_t j = 0; j < PIXELS; ++j) {
            if (rec[j] > 16) {
                put_str("\nerror: a test record is malformed\n");
                flush();
                return 1;
            }
            x[j] = (float)rec[j] / 16.0f;
        }
        conv_relu(&conv1, x, 1, SIDE, a1);
        conv_relu(&conv2, a1, C1, SIDE, a2);
        maxpool2(a2, C2, SIDE, pooled);
        conv_relu(&conv3, pooled, C2, SIDE / 2, a3);
        dense(&fc1, a3, h, true);
        dense(&fc2, h, logits, false);
        const size_t p = argmax(logits, CLASSES);
        correct += p == rec[PIXELS];
        put_str(" ");
        put_uint(p);
    }
    put_str("\ntop-1: ");
    put_uint(correct);
    put_str("/");
    put_uint(count);
    put_str("\n");
    flush();
    return 0;
}
