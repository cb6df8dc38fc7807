/* Shared helpers for the hakmem C-ABI test programs.
 *
 * The hakmem-specific entry points are declared weak so that a program can
 * run against plain glibc (no LD_PRELOAD) with `--no-hakmem` for
 * validating the tests themselves; without that flag their absence is a
 * failure. */
#ifndef HAKMEM_TEST_COMMON_H
#define HAKMEM_TEST_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern size_t hakmem_stats_format(char *buf, size_t cap) __attribute__((weak));
extern int hakmem_owns(const void *p) __attribute__((weak));

static int g_checks;
static int g_failures;
static int g_no_hakmem; /* --no-hakmem given */

/* Records one check; prints a FAIL line (with location) when it fails.
 * Evaluates to the condition, so callers can bail out of code that
 * depends on it. */
#define CHECK(cond, ...) check_impl(!!(cond), __FILE__, __LINE__, #cond, __VA_ARGS__)

__attribute__((format(printf, 5, 6))) static int
check_impl(int ok, const char *file, int line, const char *expr, const char *fmt, ...) {
    g_checks++;
    if (!ok) {
        g_failures++;
        va_list ap;
        va_start(ap, fmt);
        printf("FAIL %s:%d: (%s) ", file, line, expr);
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
        fflush(stdout);
    }
    return ok;
}

/* Hides a value from the optimizer so that allocation calls and their
 * arguments are not folded or elided. */
static inline void *opaque_ptr(void *p) {
    __asm__ volatile("" : "+r"(p)::"memory");
    return p;
}
static inline size_t opaque_size(size_t n) {
    __asm__ volatile("" : "+r"(n));
    return n;
}

/* Are the hakmem extension symbols present? Without --no-hakmem their
 * absence is a failure (the library was not preloaded). */
static int have_hakmem(void) {
    static int reported;
    int have = hakmem_owns != NULL && hakmem_stats_format != NULL;
    if (!have && !reported) {
        reported = 1;
        if (g_no_hakmem) {
            printf("SKIP hakmem_owns/hakmem_stats_format absent (--no-hakmem)\n");
        } else {
            CHECK(0, "hakmem_owns/hakmem_stats_format not found: is libhakmem.so preloaded?");
        }
    }
    return have;
}

/* hakmem_owns(p) == 1, when hakmem is present. */
#define CHECK_OWNS(p, ...)                                                       \
    do {                                                                         \
        if (have_hakmem())                                                       \
            CHECK(hakmem_owns(p) == 1, __VA_ARGS__);                             \
    } while (0)

/* Parses `key=N` out of a hakmem-stats line; returns 1 when found. */
__attribute__((unused)) static int stats_get(const char *line, const char *key, unsigned long long *out) {
    size_t klen = strlen(key);
    const char *p = line;
    while ((p = strstr(p, key)) != NULL) {
        int at_start = (p == line) || p[-1] == ' ';
        if (at_start && p[klen] == '=') {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(p + klen + 1, &end, 10);
            if (end == p + klen + 1 || errno != 0)
                return 0;
            *out = v;
            return 1;
        }
        p += klen;
    }
    return 0;
}

/* Reads the current stats line into buf; returns 1 on success. */
__attribute__((unused)) static int stats_read(char *buf, size_t cap) {
    if (!have_hakmem())
        return 0;
    size_t n = hakmem_stats_format(buf, cap);
    return CHECK(n > 0 && n < cap && strlen(buf) == n, "hakmem_stats_format returned %zu (strlen %zu, cap %zu)", n,
                 strlen(buf), cap);
}

/* One counter from a fresh stats read; 0 (with a recorded failure) when the
 * key is missing. */
__attribute__((unused)) static unsigned long long stat_now(const char *key) {
    char buf[1024];
    unsigned long long v = 0;
    if (!stats_read(buf, sizeof buf))
        return 0;
    CHECK(stats_get(buf, key, &v), "key %s missing in stats line: %s", key, buf);
    return v;
}

static int finish(const char *prog) {
    printf("%s: %d checks, %d failures\n", prog, g_checks, g_failures);
    fflush(stdout);
    return g_failures == 0 ? 0 : 1;
}

/* Fill / verify patterns derived from a seed (normally the block's address
 * when it was filled). Byte i depends only on (seed, i), so a prefix of a
 * filled block can be checked on its own (after realloc). */
static inline uint64_t pat_word(uintptr_t seed, size_t j) {
    uint64_t x = (uint64_t)(seed >> 4) ^ ((uint64_t)j * 0x9E3779B97F4A7C15ull);
    x ^= x >> 29;
    return x;
}
__attribute__((unused)) static void pat_fill(void *p, size_t n, uintptr_t seed) {
    unsigned char *b = p;
    size_t words = n / 8;
    for (size_t j = 0; j < words; j++) {
        uint64_t w = pat_word(seed, j);
        memcpy(b + 8 * j, &w, 8);
    }
    if (words * 8 < n) {
        uint64_t w = pat_word(seed, words);
        memcpy(b + 8 * words, &w, n - 8 * words);
    }
}
/* Returns the index of the first mismatching byte, or (size_t)-1. */
__attribute__((unused)) static size_t pat_check(const void *p, size_t n, uintptr_t seed) {
    const unsigned char *b = p;
    size_t words = n / 8;
    for (size_t j = 0; j < words; j++) {
        uint64_t w = pat_word(seed, j), got;
        memcpy(&got, b + 8 * j, 8);
        if (got != w) {
            for (size_t i = 0; i < 8; i++)
                if (((unsigned char *)&got)[i] != ((unsigned char *)&w)[i])
                    return 8 * j + i;
        }
    }
    if (words * 8 < n) {
        uint64_t w = pat_word(seed, words);
        const unsigned char *wb = (const unsigned char *)&w;
        for (size_t i = words * 8; i < n; i++)
            if (b[i] != wb[i - words * 8])
                return i;
    }
    return (size_t)-1;
}

#endif
