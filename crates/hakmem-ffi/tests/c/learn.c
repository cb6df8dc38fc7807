/* Modes, switches, site capture and learning through the C ABI.
 *   `tiers`: one malloc each of 100 B, 4 KiB and 48 KiB (kept live), for the
 *     Rust test to read which tier served them from HAKMEM_STATS=1.
 *   `sites`: 12 blocks of 3 MiB from each of two functions; prints
 *     `site-a <addr>` / `site-b <addr>` (the functions' addresses), so the
 *     test can match the sites hakmem profiled (HAKMEM_ELO_REPORT=1) with
 *     the call sites: each return address lies inside its function.
 *   `phased`: generations of big blocks whose sizes change half-way (as the
 *     bench's `phased`, smaller), so the learner closes windows, freezes and
 *     sees a shift.
 * Ends with `learn: N checks, M failures`. */
#define _GNU_SOURCE
#include "common.h"

#include <time.h>

#define MiB ((size_t)1 << 20)

static void *volatile keep[3];

static void touch(char *p, size_t n, int v) {
    for (size_t i = 0; i < n; i += 4096)
        p[i] = (char)v;
}

__attribute__((noinline)) static void *from_a(size_t n) {
    void *p = malloc(opaque_size(n));
    __asm__ volatile("" ::: "memory"); /* keep the call a call (no tail call from here) */
    return p;
}

__attribute__((noinline)) static void *from_b(size_t n) {
    void *p = malloc(opaque_size(n));
    __asm__ volatile("" ::: "memory");
    return p;
}

static void t_sites(void) {
    for (int i = 0; i < 12; i++) {
        char *a = opaque_ptr(from_a(3 * MiB)), *b = opaque_ptr(from_b(3 * MiB));
        if (!CHECK(a && b, "malloc(3 MiB) NULL"))
            return;
        touch(a, 3 * MiB, i);
        touch(b, 3 * MiB, i + 1);
        CHECK(a[4096] == (char)i && b[4096] == (char)(i + 1), "contents");
        free(a);
        free(b);
    }
    printf("site-a %p\nsite-b %p\n", (void *)from_a, (void *)from_b);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* 0.8 s of generations of 12 blocks of 6..9 MiB, then 0.8 s of 16 blocks of
 * 2..4 MiB: about 40 learning windows per phase. */
static void t_phased(void) {
    static char *live[16];
    double start = now_s();
    for (int gen = 0;; gen++) {
        double t = now_s() - start;
        if (t > 1.6)
            break;
        int big = t < 0.8;
        int n = big ? 12 : 16;
        for (int i = 0; i < n; i++) {
            size_t sz = big ? (6 + (size_t)(i % 4)) * MiB : (2 + (size_t)(i % 3)) * MiB;
            live[i] = opaque_ptr(malloc(opaque_size(sz)));
            if (!CHECK(live[i] != NULL, "malloc(%zu) NULL", sz))
                return;
            touch(live[i], sz, gen + i);
        }
        for (int i = 0; i < n; i++) {
            CHECK(live[i][0] == (char)(gen + i), "generation %d block %d corrupted", gen, i);
            free(live[i]);
        }
    }
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "tiers")) {
        keep[0] = opaque_ptr(malloc(opaque_size(100)));
        keep[1] = opaque_ptr(malloc(opaque_size(4096)));
        keep[2] = opaque_ptr(malloc(opaque_size(48 << 10)));
        CHECK(keep[0] && keep[1] && keep[2], "malloc NULL");
        memset(keep[0], 1, 100);
        memset(keep[1], 1, 4096);
        memset(keep[2], 1, 48 << 10);
    } else if (!strcmp(what, "sites")) {
        t_sites();
    } else if (!strcmp(what, "phased")) {
        t_phased();
    } else {
        CHECK(0, "unknown mode `%s`", what);
    }
    return finish("learn");
}
