/* test.h - the unit tests' check macros: print the failing expression and exit non-zero. */
#ifndef FTVMM_TEST_H
#define FTVMM_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_checks;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		test_checks++;                                                                     \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#define CHECK_EQ(a, b)                                                                             \
	do {                                                                                       \
		test_checks++;                                                                     \
		long long _a = (long long)(a), _b = (long long)(b);                                \
		if (_a != _b) {                                                                    \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", __FILE__, \
				__LINE__, #a, _a, #b, _b);                                         \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#define TEST_DONE(name)                                                                            \
	do {                                                                                       \
		printf("%s: %d checks passed\n", name, test_checks);                               \
		return 0;                                                                          \
	} while (0)

#endif
