/* Proof that hakmem (not glibc) serves the allocations of a preloaded
 * program, read through hakmem_stats_format():
 *   - 100,000 live malloc(32) grow tiny.carved by >= 90,000;
 *   - 8 live blocks of each pool size (4 KiB .. 1 MiB, sizes this process
 *     never allocated before) grow pool.carved by >= 8 (1 MiB blocks take
 *     >= 2 pool slabs) and touch neither run.* nor large.*;
 *   - over-aligned blocks (aligned_alloc(4096, 8192) and friends: alignment
 *     > 128, size <= 1 MiB) grow run.allocs, their frees run.frees;
 *   - live 2 MiB+ allocations grow large.allocs and os.mapped, and their
 *     frees grow large.frees.
 * Prints the stats lines it read (`before-tiny: hakmem-stats: ...`) and ends
 * with `stats: N checks, M failures`. Requires hakmem (no --no-hakmem). */
#define _GNU_SOURCE
#include "common.h"
#include <malloc.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

#define NKEYS 12
typedef struct {
    unsigned long long v[NKEYS];
} snap_t;
static const char *keys[NKEYS] = {"tiny.carved", "tiny.slabs",  "tiny.remote",  "pool.carved",
                                  "pool.slabs",  "pool.remote", "run.allocs",   "run.frees",
                                  "large.allocs", "large.frees", "os.mapped",   "os.segments"};
enum { CARVED, SLABS, REMOTE, POOL_C, POOL_S, POOL_R, RUN_A, RUN_F, LARGE_A, LARGE_F, MAPPED, SEGMENTS };

static snap_t snap(const char *label) {
    snap_t s;
    memset(&s, 0, sizeof s);
    char buf[1024];
    if (!stats_read(buf, sizeof buf))
        return s;
    printf("%s: %s\n", label, buf);
    for (int i = 0; i < NKEYS; i++)
        CHECK(stats_get(buf, keys[i], &s.v[i]), "key %s missing in: %s", keys[i], buf);
    return s;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: %s\n", argv[0]);
        return 2;
    }
    if (!have_hakmem())
        return finish("stats");

    /* tiny: 100,000 live malloc(32) */
    enum { NT = 100000 };
    void **tiny = malloc(NT * sizeof *tiny); /* 800 KB: not tiny itself */
    if (!CHECK(tiny != NULL, "malloc of pointer array failed"))
        return finish("stats");
    snap_t s0 = snap("before-tiny");
    for (int i = 0; i < NT; i++) {
        tiny[i] = opaque_ptr(malloc(opaque_size(32)));
        if (!CHECK(tiny[i] != NULL, "malloc(32) #%d NULL", i))
            return finish("stats");
        memset(tiny[i], i & 0xff, 32);
    }
    snap_t s1 = snap("after-tiny");
    CHECK(s1.v[CARVED] >= s0.v[CARVED] + 90000, "100000 live malloc(32) grew tiny.carved by only %lld (want >= 90000)",
          (long long)(s1.v[CARVED] - s0.v[CARVED]));
    CHECK(s1.v[SLABS] > 0, "tiny.slabs is %llu after 100000 tiny allocations",
          s1.v[SLABS]);
    CHECK(s1.v[MAPPED] >= 32ull * NT, "os.mapped = %llu < 3.2 MB of live tiny blocks", s1.v[MAPPED]);
    CHECK(s1.v[SEGMENTS] > 0, "os.segments = 0 with live allocations");
    for (int i = 0; i < NT; i++)
        free(tiny[i]);
    free(tiny);

    /* pools: 4 KiB .. 64 KiB (L2 up to 32 KiB, L2.5 above), all live at
     * once, 8 of each size; each size is a class this process has not used
     * before, so its blocks are carved fresh. */
    static const size_t pool_sizes[] = {4 * KiB, 8 * KiB, 16 * KiB, 40 * KiB, 48 * KiB, 64 * KiB};
    enum { PER = 8 };
    for (size_t k = 0; k < sizeof pool_sizes / sizeof pool_sizes[0]; k++) {
        size_t n = pool_sizes[k];
        void *ps[PER];
        snap_t a = snap("before-pool");
        for (int i = 0; i < PER; i++) {
            ps[i] = opaque_ptr(malloc(opaque_size(n)));
            if (!CHECK(ps[i] != NULL, "malloc(%zu) NULL", n))
                return finish("stats");
            memset(ps[i], 1, n);
        }
        snap_t b = snap("after-pool");
        CHECK(b.v[POOL_C] >= a.v[POOL_C] + PER, "%d live malloc(%zu) grew pool.carved by %lld (want >= %d)", PER, n,
              (long long)(b.v[POOL_C] - a.v[POOL_C]), PER);
        CHECK(b.v[RUN_A] == a.v[RUN_A] && b.v[LARGE_A] == a.v[LARGE_A],
              "malloc(%zu) went to the page runs (+%lld) or direct mappings (+%lld), not the pools", n,
              (long long)(b.v[RUN_A] - a.v[RUN_A]), (long long)(b.v[LARGE_A] - a.v[LARGE_A]));
        for (int i = 0; i < PER; i++)
            free(ps[i]);
        snap_t c = snap("after-pool-free");
        CHECK(c.v[RUN_F] == b.v[RUN_F] && c.v[LARGE_F] == b.v[LARGE_F],
              "free of %zu-byte pool blocks counted as run (+%lld) or large (+%lld) frees", n,
              (long long)(c.v[RUN_F] - b.v[RUN_F]), (long long)(c.v[LARGE_F] - b.v[LARGE_F]));
    }

    /* page runs: alignments beyond 128 with sizes up to 1 MiB, all live at
     * once, through aligned_alloc, posix_memalign and memalign. */
    static const struct {
        size_t align, size;
    } run_cases[] = {{4096, 8 * KiB}, {256, 2000}, {4096, 100 * KiB}, {65536, MiB}, {16, 256 * KiB}, {16, MiB}};
    for (size_t k = 0; k < sizeof run_cases / sizeof run_cases[0]; k++) {
        size_t al = run_cases[k].align, n = run_cases[k].size;
        void *ps[PER];
        snap_t a = snap("before-run");
        for (int i = 0; i < PER; i++) {
            switch (i % 3) {
            case 0:
                ps[i] = opaque_ptr(aligned_alloc(al, opaque_size(n)));
                break;
            case 1:
                if (posix_memalign(&ps[i], al, opaque_size(n)) != 0)
                    ps[i] = NULL;
                break;
            default:
                ps[i] = opaque_ptr(memalign(al, opaque_size(n)));
            }
            if (!CHECK(ps[i] != NULL, "aligned allocation (%zu, %zu) NULL", al, n))
                return finish("stats");
            CHECK((uintptr_t)ps[i] % al == 0, "aligned allocation (%zu, %zu) = %p misaligned", al, n, ps[i]);
            memset(ps[i], 2, n);
        }
        snap_t b = snap("after-run");
        CHECK(b.v[RUN_A] >= a.v[RUN_A] + PER, "%d live aligned_alloc(%zu, %zu) grew run.allocs by %lld (want >= %d)",
              PER, al, n, (long long)(b.v[RUN_A] - a.v[RUN_A]), PER);
        for (int i = 0; i < PER; i++)
            free(ps[i]);
        snap_t c = snap("after-run-free");
        CHECK(c.v[RUN_F] >= b.v[RUN_F] + PER,
              "%d free of aligned_alloc(%zu, %zu) blocks grew run.frees by %lld (want >= %d)", PER, al, n,
              (long long)(c.v[RUN_F] - b.v[RUN_F]), PER);
    }

    /* large path: 2 MiB and more */
    static const size_t large_sizes[] = {2 * MiB, 2 * MiB + 1, 8 * MiB, 64 * MiB};
    for (size_t k = 0; k < sizeof large_sizes / sizeof large_sizes[0]; k++) {
        size_t n = large_sizes[k];
        enum { PL = 3 };
        void *ps[PL];
        snap_t a = snap("before-large");
        for (int i = 0; i < PL; i++) {
            ps[i] = opaque_ptr(malloc(opaque_size(n)));
            if (!CHECK(ps[i] != NULL, "malloc(%zu) NULL", n))
                return finish("stats");
            ((char *)ps[i])[0] = 1;
            ((char *)ps[i])[n - 1] = 1;
        }
        snap_t b = snap("after-large");
        CHECK(b.v[LARGE_A] >= a.v[LARGE_A] + PL, "%d live malloc(%zu) grew large.allocs by %lld (want >= %d)", PL, n,
              (long long)(b.v[LARGE_A] - a.v[LARGE_A]), PL);
        CHECK(b.v[MAPPED] >= (unsigned long long)(PL * n), "os.mapped = %llu with %d live %zu-byte blocks",
              b.v[MAPPED], PL, n);
        for (int i = 0; i < PL; i++)
            free(ps[i]);
        snap_t c = snap("after-large-free");
        CHECK(c.v[LARGE_F] >= b.v[LARGE_F] + PL, "%d free of %zu-byte blocks grew large.frees by %lld (want >= %d)",
              PL, n, (long long)(c.v[LARGE_F] - b.v[LARGE_F]), PL);
    }
    return finish("stats");
}
