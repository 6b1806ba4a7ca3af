/*
 * The check macro shared by the C tests: CHECK(cond, fmt, ...) prints the file, line, the
 * failed condition and a printf-style explanation, and counts the failure in `failures`,
 * which each test's main returns as its exit status.
 */
#ifndef EXPQUANT_TEST_CHECK_H
#define EXPQUANT_TEST_CHECK_H

#include <stdio.h>

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

#endif
