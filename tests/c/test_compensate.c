/*
 * C99 test of the error-compensating part of the expquant C ABI: the covariance accumulator
 * and expq_quantize_compensated. Built and run by tests/c_abi.rs (shared and static), and
 * under valgrind in CI. Prints every failed check and exits nonzero if there was one.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expquant.h"

#include "check.h"

/* A status check that also requires a non-empty last error message on failure. */
#define EXPECT(call, want)                                                             \
    do {                                                                               \
        expq_status got_ = (call);                                                     \
        CHECK(got_ == (want), "%s returned %d, expected %d", #call, (int)got_,         \
              (int)(want));                                                            \
        if ((want) != EXPQ_STATUS_OK) {                                                \
            char msg_[256];                                                            \
            size_t n_ = expq_last_error_message(msg_, sizeof msg_);                    \
            CHECK(n_ > 0, "%s left no error message", #call);                          \
        }                                                                              \
    } while (0)

#define ROWS 8
#define COLS 32
#define SAMPLES 200

static uint64_t state = 0x9e3779b97f4a7c15u;

static double uniform(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) / 9007199254740992.0;
}

static double normal(void) {
    double u1 = uniform() + 1e-12, u2 = uniform();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Output error sum over the samples of ((Q - W) x)^2. */
static double output_error(const float *w, const float *q, const float *x) {
    double total = 0.0;
    for (int s = 0; s < SAMPLES; s++) {
        for (int r = 0; r < ROWS; r++) {
            double y = 0.0;
            for (int c = 0; c < COLS; c++)
                y += ((double)q[r * COLS + c] - w[r * COLS + c]) * x[s * COLS + c];
            total += y * y;
        }
    }
    return total;
}

int main(void) {
    static float w[ROWS * COLS], x[SAMPLES * COLS];
    for (int i = 0; i < ROWS * COLS; i++) w[i] = (float)(0.1 * normal());
    /* Correlated inputs with a positive mean: two shared factors plus a little noise. */
    for (int s = 0; s < SAMPLES; s++) {
        double f0 = normal(), f1 = normal();
        for (int c = 0; c < COLS; c++)
            x[s * COLS + c] =
                (float)(0.5 + (c % 2 ? f0 : f1) + 0.3 * (c % 3 ? f0 : -f1) + 0.2 * normal());
    }

    expq_covariance *cov = NULL;
    EXPECT(expq_covariance_new(1, COLS, &cov), EXPQ_STATUS_OK);
    EXPECT(expq_covariance_add_rows(cov, x, 50 * COLS), EXPQ_STATUS_OK);
    EXPECT(expq_covariance_add_rows(cov, x + 50 * COLS, (SAMPLES - 50) * COLS), EXPQ_STATUS_OK);
    CHECK(expq_covariance_count(cov) == SAMPLES, "count %llu",
          (unsigned long long)expq_covariance_count(cov));

    float mean[COLS];
    EXPECT(expq_covariance_mean(cov, mean, COLS), EXPQ_STATUS_OK);
    double m0 = 0.0;
    for (int s = 0; s < SAMPLES; s++) m0 += x[s * COLS];
    CHECK(fabs(mean[0] - m0 / SAMPLES) < 1e-5, "mean %f vs %f", mean[0], m0 / SAMPLES);

    expq_config config = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 3);
    expq_compensate_options options = expq_compensate_options_default();
    CHECK(options.dampening == 0.01 && options.block_size == 128 &&
              options.order == EXPQ_COLUMN_ORDER_DECREASING_DIAGONAL && !options.refit_groups,
          "defaults");

    expq_tensor *plain = NULL, *comp = NULL;
    float bias[ROWS];
    EXPECT(expq_quantize(w, ROWS, COLS, &config, &plain), EXPQ_STATUS_OK);
    EXPECT(expq_quantize_compensated(w, ROWS, COLS, &config, cov, &options, mean, COLS, bias,
                                     ROWS, &comp),
           EXPQ_STATUS_OK);
    static float qp[ROWS * COLS], qc[ROWS * COLS];
    EXPECT(expq_tensor_dequantize(plain, qp, ROWS * COLS), EXPQ_STATUS_OK);
    EXPECT(expq_tensor_dequantize(comp, qc, ROWS * COLS), EXPQ_STATUS_OK);
    double ep = output_error(w, qp, x), ec = output_error(w, qc, x);
    CHECK(ec < ep, "compensated output error %g not below plain %g", ec, ep);
    /* The correction is minus the mean output shift of the compensated weights. */
    for (int r = 0; r < ROWS; r++) {
        double shift = 0.0;
        for (int c = 0; c < COLS; c++)
            shift += ((double)qc[r * COLS + c] - w[r * COLS + c]) * mean[c];
        CHECK(fabs(bias[r] + shift) < 1e-4, "row %d: bias %f, shift %f", r, bias[r], shift);
    }

    /* NULL options are the defaults; no means, no correction buffer needed. */
    expq_tensor *again = NULL;
    EXPECT(expq_quantize_compensated(w, ROWS, COLS, &config, cov, NULL, NULL, 0, NULL, 0,
                                     &again),
           EXPQ_STATUS_OK);
    static float qa[ROWS * COLS];
    EXPECT(expq_tensor_dequantize(again, qa, ROWS * COLS), EXPQ_STATUS_OK);
    CHECK(memcmp(qa, qc, sizeof qa) == 0, "NULL options differ from the defaults");
    expq_tensor_free(again);

    /* Errors leave the outputs alone. */
    expq_tensor *untouched = NULL;
    float bias2[ROWS] = {0};
    EXPECT(expq_quantize_compensated(w, ROWS, COLS - 1, &config, cov, &options, NULL, 0, NULL,
                                     0, &untouched),
           EXPQ_STATUS_INVALID_ARGUMENT);
    expq_compensate_options bad = options;
    bad.dampening = -1.0;
    EXPECT(expq_quantize_compensated(w, ROWS, COLS, &config, cov, &bad, NULL, 0, NULL, 0,
                                     &untouched),
           EXPQ_STATUS_INVALID_ARGUMENT);
    bad = options;
    bad.order = 9;
    EXPECT(expq_quantize_compensated(w, ROWS, COLS, &config, cov, &bad, NULL, 0, NULL, 0,
                                     &untouched),
           EXPQ_STATUS_INVALID_ARGUMENT);
    EXPECT(expq_quantize_compensated(w, ROWS, COLS, &config, cov, &options, mean, COLS, bias2,
                                     ROWS - 1, &untouched),
           EXPQ_STATUS_BUFFER_TOO_SMALL);
    EXPECT(expq_quantize_compensated(w, ROWS, COLS, &config, NULL, &options, NULL, 0, NULL, 0,
                                     &untouched),
           EXPQ_STATUS_NULL_POINTER);
    CHECK(untouched == NULL, "out written on failure");
    CHECK(bias2[0] == 0.0f, "bias written on failure");

    float bad_row[COLS];
    for (int c = 0; c < COLS; c++) bad_row[c] = 1.0f;
    bad_row[3] = NAN;
    EXPECT(expq_covariance_add_rows(cov, bad_row, COLS), EXPQ_STATUS_NON_FINITE);
    EXPECT(expq_covariance_add_rows(cov, bad_row, COLS - 1), EXPQ_STATUS_INVALID_ARGUMENT);
    EXPECT(expq_covariance_add_rows(NULL, bad_row, COLS), EXPQ_STATUS_NULL_POINTER);
    EXPECT(expq_covariance_mean(cov, mean, COLS - 1), EXPQ_STATUS_BUFFER_TOO_SMALL);
    expq_covariance *none = NULL;
    EXPECT(expq_covariance_new(0, COLS, &none), EXPQ_STATUS_INVALID_ARGUMENT);
    CHECK(none == NULL, "out written on failure");

    /* A caller's matrix: the identity (diagonal), which gives plain quantization. */
    static double eye[COLS * COLS];
    for (int i = 0; i < COLS; i++) eye[i * COLS + i] = 1.0;
    expq_covariance *given = NULL;
    EXPECT(expq_covariance_from_matrix(1, COLS, eye, COLS * COLS, &given), EXPQ_STATUS_OK);
    EXPECT(expq_covariance_mean(given, mean, COLS), EXPQ_STATUS_INVALID_ARGUMENT);
    expq_tensor *diag = NULL;
    EXPECT(expq_quantize_compensated(w, ROWS, COLS, &config, given, &options, NULL, 0, NULL, 0,
                                     &diag),
           EXPQ_STATUS_OK);
    static float qd[ROWS * COLS];
    EXPECT(expq_tensor_dequantize(diag, qd, ROWS * COLS), EXPQ_STATUS_OK);
    CHECK(memcmp(qd, qp, sizeof qd) == 0, "diagonal covariance differs from plain");
    eye[1] = 0.5; /* not symmetric */
    expq_covariance *asym = NULL;
    EXPECT(expq_covariance_from_matrix(1, COLS, eye, COLS * COLS, &asym),
           EXPQ_STATUS_INVALID_ARGUMENT);
    CHECK(asym == NULL, "out written on failure");
    /* Rank one and no dampening: not positive definite. */
    static double rank1[COLS * COLS];
    for (int i = 0; i < COLS * COLS; i++) rank1[i] = 1.0;
    expq_covariance *singular = NULL;
    EXPECT(expq_covariance_from_matrix(1, COLS, rank1, COLS * COLS, &singular), EXPQ_STATUS_OK);
    bad = options;
    bad.dampening = 0.0;
    EXPECT(expq_quantize_compensated(w, ROWS, COLS, &config, singular, &bad, NULL, 0, NULL, 0,
                                     &untouched),
           EXPQ_STATUS_INVALID_ARGUMENT);
    char msg[256];
    expq_last_error_message(msg, sizeof msg);
    CHECK(strstr(msg, "not positive definite") != NULL, "message: %s", msg);

    expq_tensor_free(diag);
    expq_tensor_free(comp);
    expq_tensor_free(plain);
    expq_covariance_free(singular);
    expq_covariance_free(given);
    expq_covariance_free(cov);
    expq_covariance_free(NULL);

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
