/*
 * check.h: a tiny assert header for unit tests.
 *
 *     CHECK(cond);  CHECK_EQ_INT(a, b);  CHECK_STR_EQ(a, b);
 *     return check_done();
 *
 * A failed check prints file:line, the expression and the values, and the
 * test goes on. check_done() prints "N passed, M failed" and returns the exit
 * status (0 when nothing failed). Include it from one file per test program.
 */
#ifndef GENRELAY_CHECK_H
#define GENRELAY_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed_, check_failed_;

static inline int check_result_(int ok, const char *file, int line, const char *expr)
{
	if (ok) {
		check_passed_++;
		return 1;
	}
	check_failed_++;
	fprintf(stderr, "%s:%d: check failed: %s\n", file, line, expr);
	return 0;
}

#define CHECK(cond) ((void)check_result_((cond) ? 1 : 0, __FILE__, __LINE__, #cond))

#define CHECK_EQ_INT(a, b)                                                          \
	do {                                                                        \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b);     \
		if (!check_result_(check_a_ == check_b_, __FILE__, __LINE__,       \
				   #a " == " #b))                                   \
			fprintf(stderr, "    %lld != %lld\n", check_a_, check_b_);   \
	} while (0)

#define CHECK_STR_EQ(a, b)                                                          \
	do {                                                                        \
		const char *check_a_ = (a), *check_b_ = (b);                        \
		int check_ok_ = check_a_ != NULL && check_b_ != NULL &&             \
				strcmp(check_a_, check_b_) == 0;                    \
		if (!check_result_(check_ok_, __FILE__, __LINE__, #a " == " #b))    \
			fprintf(stderr, "    \"%s\" != \"%s\"\n",                   \
				check_a_ ? check_a_ : "(null)",                     \
				check_b_ ? check_b_ : "(null)");                    \
	} while (0)

static inline int check_done(void)
{
	printf("%d passed, %d failed\n", check_passed_, check_failed_);
	return check_failed_ == 0 ? 0 : 1;
}

#endif
