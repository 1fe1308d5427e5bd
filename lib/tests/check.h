/* A minimal check macro for the C unit tests. */
#ifndef NNTM_TESTS_CHECK_H
#define NNTM_TESTS_CHECK_H

#include <stdio.h>

static int nntm_test_failures = 0;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            nntm_test_failures++;                                          \
        }                                                                  \
    } while (0)

/* xorshift64*: deterministic pseudo-random numbers for the tests. */
static inline unsigned long long test_rand(unsigned long long *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static inline double test_uniform(unsigned long long *s) {
    return (double)(test_rand(s) >> 11) / 9007199254740992.0;
}

#define TEST_DONE()                                                        \
    do {                                                                   \
        if (nntm_test_failures) {                                          \
            fprintf(stderr, "%d check(s) failed\n", nntm_test_failures);   \
            return 1;                                                      \
        }                                                                  \
        printf("all checks passed\n");                                     \
        return 0;                                                          \
    } while (0)

#endif
