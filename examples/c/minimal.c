/* Quantize a layer to 4-bit exponential levels and multiply a vector with it.
 *
 * Build (from the repository root, after `cargo build --release -p expquant-capi` and
 * `ln -sf libexpquant.so target/release/libexpquant.so.0`, the name its SONAME gives):
 *   cc -std=c99 -Iinclude examples/c/minimal.c -Ltarget/release -lexpquant \
 *      -Wl,-rpath,"$PWD/target/release" -o minimal
 */
#include <stdio.h>

#include "expquant.h"

enum { ROWS = 4, COLS = 64 };

int main(void) {
    float weights[ROWS * COLS], x[COLS], y[ROWS];
    expq_tensor *t = NULL;
    int i;

    for (i = 0; i < ROWS * COLS; i++) { /* a bell-shaped spread in [-1, 1] */
        float u = (float)i * 0.618f - (float)(int)((float)i * 0.618f) - 0.5f;
        weights[i] = 8.0f * u * u * u;
    }
    for (i = 0; i < COLS; i++) x[i] = 1.0f / (float)(i + 1);

    expq_config config = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 4);
    expq_status status = expq_quantize(weights, ROWS, COLS, &config, &t);
    if (status == EXPQ_STATUS_OK) {
        status = expq_tensor_gemv(t, x, COLS, y, ROWS); /* y = W x, from the packed codes */
    }
    if (status != EXPQ_STATUS_OK) {
        char message[256];
        expq_last_error_message(message, sizeof message);
        fprintf(stderr, "expquant error %d: %s\n", (int)status, message);
        expq_tensor_free(t); /* NULL is fine */
        return 1;
    }
    printf("expquant %s: %.2f bits per weight, y = [%.4f, %.4f, %.4f, %.4f]\n", expq_version(),
           expq_tensor_bits_per_weight(t), y[0], y[1], y[2], y[3]);
    expq_tensor_free(t);
    return 0;
}
