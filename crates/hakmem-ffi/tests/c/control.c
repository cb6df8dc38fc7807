/* The query and control functions: hakmem_stats_json while 10 MiB are live in mixed sizes
 * (the JSON printed on a `json-live:` line for the Rust test to parse, and again after the
 * frees on `json-freed:`), its snprintf-like contract, the options' round trips and error
 * codes, and hakmem_purge.
 * With argument `close-stderr`: closes fd 2 and exits (the exit report must still appear). */
#include "common.h"
#include <unistd.h>

extern size_t hakmem_stats_json(char *buf, size_t cap) __attribute__((weak));
extern int hakmem_option_get(const char *name, long *value) __attribute__((weak));
extern int hakmem_option_set(const char *name, long value) __attribute__((weak));
extern void hakmem_purge(void) __attribute__((weak));

#define N_SIZES 7
static const size_t sizes[N_SIZES] = {24, 200, 1000, 6000, 50000, 200000, 3 << 20};

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "close-stderr") == 0) {
        void *keep = malloc(100);
        opaque_ptr(keep);
        close(2);
        return 0;
    }
    if (!hakmem_stats_json || !hakmem_option_get || !hakmem_option_set || !hakmem_purge) {
        printf("FAIL control functions not found: is libhakmem.so preloaded?\n");
        return 1;
    }
    /* 10 MiB live, spread over every tier: ~1/7 of it in each size. */
    enum { MAXN = 1 << 17 };
    static void *blocks[MAXN];
    size_t n = 0, live = 0;
    for (int k = 0; k < N_SIZES; k++) {
        size_t share = 0;
        while (share < ((size_t)10 << 20) / N_SIZES + 1 && n < MAXN) {
            char *p = malloc(sizes[k]);
            if (!CHECK(p != NULL, "malloc(%zu)", sizes[k]))
                return finish("control");
            memset(p, 1, sizes[k]);
            blocks[n++] = p;
            share += sizes[k];
        }
        live += share;
    }
    CHECK(live >= (size_t)10 << 20, "live %zu", live);
    static char buf[8192];
    size_t len = hakmem_stats_json(buf, sizeof buf);
    CHECK(len > 0 && len < sizeof buf, "json length %zu", len);
    CHECK(strlen(buf) == len, "NUL-terminated at the returned length");
    CHECK(buf[0] == '{' && buf[len - 1] == '}', "an object: %.20s", buf);
    printf("json-live: %s\n", buf);
    printf("live-bytes: %zu\n", live);

    /* snprintf-like: a short buffer gets a cut, NUL-terminated prefix and the full length. */
    char small[16];
    memset(small, 'x', sizeof small);
    size_t len2 = hakmem_stats_json(small, sizeof small);
    CHECK(len2 >= sizeof small, "cut: full length %zu reported", len2);
    CHECK(small[15] == 0 && strlen(small) == 15, "cut and terminated");
    CHECK(hakmem_stats_json(NULL, 0) >= sizeof small, "length query with a null buffer");

    for (size_t i = 0; i < n; i++)
        free(blocks[i]);
    hakmem_stats_json(buf, sizeof buf);
    printf("json-freed: %s\n", buf);

    /* Options: round trips, then the errors. */
    const char *names[] = {"purge_delay_ms", "bigcache_budget", "thp"};
    const long values[] = {250, 64L << 20, 0};
    for (int i = 0; i < 3; i++) {
        long old = -1, now = -1;
        CHECK(hakmem_option_get(names[i], &old) == 0 && old >= 0, "get %s: %ld", names[i], old);
        CHECK(hakmem_option_set(names[i], values[i]) == 0, "set %s", names[i]);
        CHECK(hakmem_option_get(names[i], &now) == 0 && now == values[i], "%s reads %ld", names[i],
              now);
        CHECK(hakmem_option_set(names[i], old) == 0, "restore %s", names[i]);
        CHECK(hakmem_option_get(names[i], &now) == 0 && now == old, "%s restored", names[i]);
    }
    long v = 7;
    CHECK(hakmem_option_get("no_such_option", &v) == ENOENT && v == 7, "unknown get: ENOENT");
    CHECK(hakmem_option_set("no_such_option", 1) == ENOENT, "unknown set: ENOENT");
    CHECK(hakmem_option_get(NULL, &v) == ENOENT, "null name: ENOENT");
    CHECK(hakmem_option_get("thp", NULL) == EINVAL, "null value: EINVAL");
    CHECK(hakmem_option_set("purge_delay_ms", -1) == EINVAL, "negative delay: EINVAL");
    CHECK(hakmem_option_set("purge_delay_ms", 60001) == EINVAL, "delay above 60 s: EINVAL");
    CHECK(hakmem_option_set("bigcache_budget", -5) == EINVAL, "negative budget: EINVAL");
    CHECK(hakmem_option_set("thp", 3) == EINVAL, "thp 3: EINVAL");
    CHECK(hakmem_option_get("purge_delay_ms", &v) == 0 && v != 60001, "unchanged after EINVAL");

    /* A budget of 0 with a purge: the BigCache holds nothing after it. */
    void *big = malloc(8 << 20);
    CHECK(big != NULL, "8 MiB");
    free(big);
    CHECK(hakmem_option_set("bigcache_budget", 0) == 0, "budget 0");
    errno = 12345;
    hakmem_purge();
    CHECK(errno == 12345, "hakmem_purge keeps errno");
    hakmem_stats_json(buf, sizeof buf);
    CHECK(strstr(buf, "\"cached\":0,") != NULL, "nothing cached: %s", strstr(buf, "\"large\""));
    return finish("control");
}
