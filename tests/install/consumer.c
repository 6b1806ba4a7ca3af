/* A program that uses an installed expquant, built by scripts/check_install.sh through CMake
 * (`find_package(expquant)`) and through pkg-config, against the shared and the static
 * library. Usage: consumer EXPECTED_VERSION. Prints "consumer ok" when every check holds.
 *
 * Checks report a line number, not __FILE__: the binaries must not embed paths of the tree
 * they were built in. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <expquant.h>

enum { ROWS = 3, COLS = 40 };

static int failures = 0;

#define CHECK(cond)                                                   \
    do {                                                              \
        if (!(cond)) {                                                \
            fprintf(stderr, "consumer: check failed at line %d: %s\n", \
                    __LINE__, #cond);                                 \
            failures++;                                               \
        }                                                             \
    } while (0)

int main(int argc, char **argv) {
    float weights[ROWS * COLS], dequantized[ROWS * COLS], x[COLS], y[ROWS];
    expq_tensor *t = NULL;
    char message[256];
    int r, c;

    if (argc != 2) {
        fprintf(stderr, "usage: consumer EXPECTED_VERSION\n");
        return 2;
    }
    /* The library that was loaded is the one that was installed. */
    CHECK(strcmp(expq_version(), argv[1]) == 0);

    for (r = 0; r < ROWS * COLS; r++) {
        weights[r] = sinf(0.37f * (float)r) * (float)(1 + r % 5);
    }
    for (c = 0; c < COLS; c++) x[c] = cosf(0.11f * (float)c);

    expq_config config = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 4);
    CHECK(expq_quantize(weights, ROWS, COLS, &config, &t) == EXPQ_STATUS_OK);
    if (t == NULL) {
        return 1;
    }
    CHECK(expq_tensor_rows(t) == ROWS && expq_tensor_cols(t) == COLS);
    CHECK(expq_tensor_dequantize(t, dequantized, ROWS * COLS) == EXPQ_STATUS_OK);
    CHECK(expq_tensor_gemv(t, x, COLS, y, ROWS) == EXPQ_STATUS_OK);
    /* GEMV on the packed codes equals the dequantized matrix times x. */
    for (r = 0; r < ROWS; r++) {
        double want = 0.0, scale = 0.0;
        for (c = 0; c < COLS; c++) {
            want += (double)dequantized[r * COLS + c] * (double)x[c];
            scale += fabs((double)dequantized[r * COLS + c] * (double)x[c]);
        }
        CHECK(fabs((double)y[r] - want) <= 1e-5 * (scale + 1.0));
    }
    expq_tensor_free(t);

    /* Errors come back as a status and a message. */
    t = NULL;
    config = expq_config_default(EXPQ_SCHEME_LINEAR, 9);
    CHECK(expq_quantize(weights, ROWS, COLS, &config, &t) == EXPQ_STATUS_INVALID_ARGUMENT);
    CHECK(t == NULL);
    CHECK(expq_last_error_message(message, sizeof message) > 0);
    CHECK(strstr(message, "bits") != NULL);

    if (failures != 0) {
        return 1;
    }
    printf("consumer ok: expquant %s\n", expq_version());
    return 0;
}
