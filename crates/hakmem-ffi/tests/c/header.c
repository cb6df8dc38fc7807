/* Compiles against include/hakmem.h (as C and as C++, -Wall -Wextra -Werror) and calls every
 * extension it declares, linked against libhakmem (shared or static): see tests/header.rs and
 * the install step of `cargo xtask test`.
 *
 * Each function is first assigned to a pointer of the type the library implements, so a
 * declaration that drifts from the library fails to compile. The checks show that hakmem
 * serves this program's allocations, including the C library's own (strdup, fopen), which a
 * static link must interpose as well as a shared one. Prints `version X.Y.Z`, a stats line
 * and `header: N checks, 0 failures`; exits 1 on any failure. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hakmem.h>

static int checks, failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        checks++;                                                                    \
        if (!(cond)) {                                                               \
            failures++;                                                              \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                   \
        }                                                                            \
    } while (0)

int main(void) {
    int (*owns)(const void *) = hakmem_owns;
    size_t (*stats)(char *, size_t) = hakmem_stats_format;
    void *(*guarded)(size_t) = hakmem_guarded_malloc;

    /* hakmem_owns: blocks of every tier, the C library's own allocations, not others. */
    static const size_t sizes[] = {0, 1, 16, 1000, 20000, 200000, 3u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *p = (char *)malloc(sizes[i]);
        CHECK(p != NULL && owns(p) == 1);
        CHECK(malloc_usable_size(p) >= sizes[i]);
        free(p);
    }
    char *s = strdup("hakmem");
    CHECK(s != NULL && owns(s) == 1);
    free(s);
    FILE *f = fopen("/dev/null", "r");
    CHECK(f != NULL && owns(f) == 1);
    if (f)
        fclose(f);
    int local = 0;
    static int global;
    CHECK(owns(&local) == 0);
    CHECK(owns(&global) == 0);
    CHECK(owns(NULL) == 0);

    /* hakmem_stats_format: the length without a buffer, a cut copy, the whole line. */
    size_t len = stats(NULL, 0);
    CHECK(len > strlen("hakmem-stats: "));
    char small[8];
    CHECK(stats(small, sizeof small) == len);
    CHECK(strlen(small) == sizeof small - 1 && memcmp(small, "hakmem-", 7) == 0);
    char line[1024];
    CHECK(stats(line, sizeof line) == len && strlen(line) == len);
    CHECK(strncmp(line, "hakmem-stats: ", 14) == 0);

    /* hakmem_guarded_malloc: a real block in range, NULL + ENOMEM outside it. */
    char *g = (char *)guarded(100);
    CHECK(g != NULL && owns(g) == 1 && malloc_usable_size(g) == 112);
    if (g) {
        memset(g, 0x5a, 112);
        free(g);
    }
    errno = 0;
    CHECK(guarded(0) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(guarded(4081) == NULL && errno == ENOMEM);

    /* hakmem_stats_json, the options and hakmem_purge: typed as declared, and answering. */
    size_t (*json)(char *, size_t) = hakmem_stats_json;
    int (*opt_get)(const char *, long *) = hakmem_option_get;
    int (*opt_set)(const char *, long) = hakmem_option_set;
    void (*purge)(void) = hakmem_purge;
    char obj[4096];
    size_t jlen = json(obj, sizeof obj);
    CHECK(jlen > 2 && jlen < sizeof obj && obj[0] == '{' && obj[jlen - 1] == '}');
    long delay = -1;
    CHECK(opt_get("purge_delay_ms", &delay) == 0 && delay >= 0);
    CHECK(opt_set("purge_delay_ms", delay) == 0);
    CHECK(opt_get("no_such_option", &delay) == ENOENT);
    purge();

    /* The other exports the header documents. */
    CHECK(malloc_trim(0) == 1);

    printf("version %d.%d.%d\n", HAKMEM_VERSION_MAJOR, HAKMEM_VERSION_MINOR,
           HAKMEM_VERSION_PATCH);
    printf("%s\n", line);
    printf("header: %d checks, %d failures\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
