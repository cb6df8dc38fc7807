/* Multi-threaded stress of the malloc family (run under LD_PRELOAD).
 *
 *   stress mix   [--threads N] [--ops N] [--no-hakmem]
 *       N threads (default 8) allocate blocks of random sizes (mostly
 *       1..1024, some up to 64 KiB, a few up to 4 MiB; some via calloc or
 *       aligned_alloc), fill each with a pattern derived from its address,
 *       realloc some (contents must survive), and hand about a third of
 *       the blocks they drop to another thread through a mutex-protected
 *       inbox. Every block's pattern is verified right before it is freed,
 *       by whichever thread frees it.
 *   stress churn [--threads N] [--no-hakmem]
 *       N (default 200) short-lived threads, 4 at a time, each allocating,
 *       freeing blocks the main thread made, and leaving blocks for the
 *       main thread to verify and free after the join; then detached
 *       threads that exit while the main thread allocates.
 *
 * Prints `FAIL ...` for every problem and ends with
 * `stress-<mode>: N checks, M failures`; exits non-zero on any failure. */
#define _GNU_SOURCE
#include "common.h"
#include "mt.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static atomic_long g_verified;
static atomic_long g_transfers;
static atomic_long g_reallocs;
static atomic_long g_allocs;
static int g_check_owns;



typedef struct {
    char *p;
    size_t n;
    uintptr_t seed;
} blk_t;

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static size_t random_size(uint64_t *r) {
    uint64_t x = rng_next(r);
    unsigned k = x % 1000;
    x >>= 10;
    if (k < 800)
        return 1 + x % 1024;
    if (k < 990)
        return 1025 + x % (64 * KiB - 1024);
    if (k < 998)
        return 64 * KiB + x % (448 * KiB);
    return 512 * KiB + x % (3584 * KiB);
}

/* Allocates a block of random size with a random function, fills it. */
static blk_t blk_new(uint64_t *r, int tid) {
    blk_t b;
    b.n = random_size(r);
    unsigned how = rng_next(r) % 20;
    size_t align = 0;
    if (how == 0) {
        b.p = opaque_ptr(calloc(1, opaque_size(b.n)));
        if (b.p) {
            for (size_t i = 0; i < b.n; i++)
                if (b.p[i]) {
                    fail("thread %d: calloc(%zu) = %p byte %zu is %d, not 0", tid, b.n, (void *)b.p, i, b.p[i]);
                    break;
                }
        }
    } else if (how == 1) {
        align = (size_t)1 << (4 + rng_next(r) % 13); /* 16 .. 64 KiB */
        b.p = opaque_ptr(aligned_alloc(opaque_size(align), opaque_size(b.n)));
        if (b.p && ((uintptr_t)b.p & (align - 1)))
            fail("thread %d: aligned_alloc(%zu, %zu) = %p misaligned", tid, align, b.n, (void *)b.p);
    } else {
        b.p = opaque_ptr(malloc(opaque_size(b.n)));
    }
    if (!b.p) {
        fail("thread %d: allocation of %zu bytes returned NULL", tid, b.n);
        b.n = 0;
        return b;
    }
    if (b.n >= 16 && ((uintptr_t)b.p & 15))
        fail("thread %d: %zu-byte block %p is not 16-aligned", tid, b.n, (void *)b.p);
    if (g_check_owns && !hakmem_owns(b.p))
        fail("thread %d: block %p (%zu bytes) not owned by hakmem", tid, (void *)b.p, b.n);
    b.seed = (uintptr_t)b.p;
    pat_fill(b.p, b.n, b.seed);
    atomic_fetch_add_explicit(&g_allocs, 1, memory_order_relaxed);
    return b;
}

static void blk_verify(const blk_t *b, int tid, const char *when) {
    size_t at = pat_check(b->p, b->n, b->seed);
    if (at != (size_t)-1)
        fail("thread %d: block %p (%zu bytes, seed %#lx) corrupted at byte %zu %s", tid, (void *)b->p, b->n,
             (unsigned long)b->seed, at, when);
    atomic_fetch_add_explicit(&g_verified, 1, memory_order_relaxed);
}

static void blk_free(blk_t *b, int tid) {
    if (!b->p)
        return;
    blk_verify(b, tid, "before free");
    free(opaque_ptr(b->p));
    b->p = NULL;
}

/* realloc to a new random size: the old pattern must survive in the
 * common prefix; then refill for the new address. */
static void blk_realloc(blk_t *b, uint64_t *r, int tid) {
    size_t m = random_size(r);
    char *q = opaque_ptr(realloc(b->p, opaque_size(m)));
    if (!q) {
        fail("thread %d: realloc(%p, %zu) returned NULL", tid, (void *)b->p, m);
        return;
    }
    size_t keep = b->n < m ? b->n : m;
    size_t at = pat_check(q, keep, b->seed);
    if (at != (size_t)-1)
        fail("thread %d: realloc %zu -> %zu (%p -> %p) lost contents at byte %zu", tid, b->n, m, (void *)b->p,
             (void *)q, at);
    if (malloc_usable_size(q) < m)
        fail("thread %d: usable size of realloc(.., %zu) is %zu", tid, m, malloc_usable_size(q));
    b->p = q;
    b->n = m;
    b->seed = (uintptr_t)q;
    pat_fill(q, m, b->seed);
    atomic_fetch_add_explicit(&g_reallocs, 1, memory_order_relaxed);
}

/* ---------------------------------------------------------------- mix */

typedef struct {
    pthread_mutex_t lock;
    blk_t *items; /* grown with realloc: the queue itself uses the allocator */
    size_t len, cap;
} inbox_t;

static int g_threads = 8;
static long g_ops = 60000;
static inbox_t *g_inbox;
static pthread_barrier_t g_barrier;

static void inbox_push(inbox_t *q, blk_t b) {
    pthread_mutex_lock(&q->lock);
    if (q->len == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 64;
        blk_t *ni = realloc(q->items, nc * sizeof *ni);
        if (!ni) {
            pthread_mutex_unlock(&q->lock);
            fail("inbox realloc failed");
            return;
        }
        q->items = ni;
        q->cap = nc;
    }
    q->items[q->len++] = b;
    pthread_mutex_unlock(&q->lock);
}

/* Takes everything out of the inbox (returned array must be freed). */
static blk_t *inbox_take(inbox_t *q, size_t *len) {
    pthread_mutex_lock(&q->lock);
    blk_t *items = q->items;
    *len = q->len;
    q->items = NULL;
    q->len = q->cap = 0;
    pthread_mutex_unlock(&q->lock);
    return items;
}

enum { SLOTS = 1024 };

static void *mix_thread(void *arg) {
    int tid = (int)(intptr_t)arg;
    uint64_t r = 0x9E3779B97F4A7C15ull * (uint64_t)(tid + 1) + 1;
    blk_t *slots = calloc(SLOTS, sizeof *slots);
    if (!slots) {
        fail("thread %d: calloc slots failed", tid);
        return NULL;
    }
    for (long op = 0; op < g_ops; op++) {
        unsigned i = rng_next(&r) % SLOTS;
        blk_t *b = &slots[i];
        if (!b->p) {
            *b = blk_new(&r, tid);
        } else {
            unsigned act = rng_next(&r) % 8;
            if (act < 4) {
                blk_free(b, tid);
            } else if (act < 6) {
                int to = (int)(rng_next(&r) % (unsigned)(g_threads - 1));
                if (to >= tid)
                    to++;
                inbox_push(&g_inbox[to], *b);
                b->p = NULL;
                atomic_fetch_add_explicit(&g_transfers, 1, memory_order_relaxed);
            } else {
                blk_realloc(b, &r, tid);
            }
        }
        if ((op & 31) == 0) {
            size_t len;
            blk_t *got = inbox_take(&g_inbox[tid], &len);
            for (size_t k = 0; k < len; k++) {
                blk_t in = got[k];
                if (rng_next(&r) & 1) {
                    blk_free(&in, tid);
                } else {
                    /* adopt it: it may be realloc'ed, freed or passed on later */
                    blk_verify(&in, tid, "on receipt");
                    unsigned j = rng_next(&r) % SLOTS;
                    blk_free(&slots[j], tid);
                    slots[j] = in;
                }
            }
            free(got);
        }
    }
    pthread_barrier_wait(&g_barrier); /* nobody sends after this */
    size_t len;
    blk_t *got = inbox_take(&g_inbox[tid], &len);
    for (size_t k = 0; k < len; k++)
        blk_free(&got[k], tid);
    free(got);
    for (unsigned i = 0; i < SLOTS; i++)
        blk_free(&slots[i], tid);
    free(slots);
    return NULL;
}

static void run_mix(void) {
    g_inbox = calloc((size_t)g_threads, sizeof *g_inbox);
    for (int i = 0; i < g_threads; i++)
        pthread_mutex_init(&g_inbox[i].lock, NULL);
    pthread_barrier_init(&g_barrier, NULL, (unsigned)g_threads);
    pthread_t *th = calloc((size_t)g_threads, sizeof *th);
    for (int i = 0; i < g_threads; i++)
        if (pthread_create(&th[i], NULL, mix_thread, (void *)(intptr_t)i) != 0) {
            fail("pthread_create failed");
            exit(1);
        }
    for (int i = 0; i < g_threads; i++)
        pthread_join(th[i], NULL);
    free(th);
    for (int i = 0; i < g_threads; i++)
        free(g_inbox[i].items);
    free(g_inbox);
    printf("stress-mix: threads=%d ops/thread=%ld allocs=%ld verified=%ld transfers=%ld reallocs=%ld\n", g_threads,
           g_ops, atomic_load(&g_allocs), atomic_load(&g_verified), atomic_load(&g_transfers),
           atomic_load(&g_reallocs));
    if (atomic_load(&g_transfers) == 0 || atomic_load(&g_reallocs) == 0)
        fail("no transfers or reallocs happened");
}

/* -------------------------------------------------------------- churn */

enum { CHURN_BLOCKS = 64, FROM_MAIN = 16 };

typedef struct {
    int idx;
    blk_t from_main[FROM_MAIN]; /* the thread frees these */
    blk_t left[CHURN_BLOCKS];   /* the thread leaves these for main */
} churn_arg_t;

static void *churn_thread(void *arg) {
    churn_arg_t *a = arg;
    uint64_t r = 0xD1B54A32D192ED03ull * (uint64_t)(a->idx + 7);
    blk_t mine[CHURN_BLOCKS];
    for (int i = 0; i < CHURN_BLOCKS; i++) {
        mine[i] = blk_new(&r, 1000 + a->idx);
        if (i == 0 && a->idx % 8 == 0) { /* now and then a large block */
            blk_free(&mine[i], 1000 + a->idx);
            mine[i].n = 2 * MiB + 123;
            mine[i].p = malloc(mine[i].n);
            if (!mine[i].p) {
                fail("churn: malloc(2MiB) NULL");
                mine[i].n = 0;
            } else {
                mine[i].seed = (uintptr_t)mine[i].p;
                pat_fill(mine[i].p, mine[i].n, mine[i].seed);
            }
        }
    }
    for (int i = 0; i < FROM_MAIN; i++)
        blk_free(&a->from_main[i], 1000 + a->idx);
    for (int i = 0; i < CHURN_BLOCKS; i++) {
        if (i % 2 == 0) {
            blk_free(&mine[i], 1000 + a->idx);
            a->left[i].p = NULL;
        } else {
            if (i % 7 == 1)
                blk_realloc(&mine[i], &r, 1000 + a->idx);
            a->left[i] = mine[i];
        }
    }
    return NULL;
}

static atomic_int g_detached_done;
static void *detached_thread(void *arg) {
    uint64_t r = 1234567 + (uint64_t)(uintptr_t)arg;
    blk_t b[32];
    for (int i = 0; i < 32; i++)
        b[i] = blk_new(&r, 5000);
    for (int i = 0; i < 32; i += 2)
        blk_free(&b[i], 5000);
    for (int i = 1; i < 32; i += 2)
        blk_free(&b[i], 5000);
    /* Leave some cached state behind: a few blocks allocated and freed
     * right before exit. */
    for (int i = 0; i < 16; i++)
        free(opaque_ptr(malloc(opaque_size(24 + (size_t)i * 8))));
    atomic_fetch_add(&g_detached_done, 1);
    return NULL;
}

static void run_churn(int nthreads) {
    enum { BATCH = 4 };
    uint64_t r = 42;
    long left_verified = 0;
    for (int base = 0; base < nthreads; base += BATCH) {
        pthread_t th[BATCH];
        churn_arg_t *args[BATCH];
        int n = nthreads - base < BATCH ? nthreads - base : BATCH;
        for (int k = 0; k < n; k++) {
            args[k] = calloc(1, sizeof(churn_arg_t));
            args[k]->idx = base + k;
            for (int i = 0; i < FROM_MAIN; i++)
                args[k]->from_main[i] = blk_new(&r, 0);
            if (pthread_create(&th[k], NULL, churn_thread, args[k]) != 0) {
                fail("pthread_create failed at thread %d", base + k);
                exit(1);
            }
        }
        for (int k = 0; k < n; k++) {
            pthread_join(th[k], NULL);
            for (int i = 0; i < CHURN_BLOCKS; i++) {
                if (args[k]->left[i].p) {
                    blk_free(&args[k]->left[i], 0);
                    left_verified++;
                }
            }
            free(args[k]);
        }
    }
    /* Detached threads exiting while main keeps allocating. */
    enum { DETACHED = 24 };
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < DETACHED; i++) {
        pthread_t t;
        if (pthread_create(&t, &attr, detached_thread, (void *)(uintptr_t)i) != 0) {
            fail("pthread_create (detached) failed");
            exit(1);
        }
        blk_t b = blk_new(&r, 0);
        blk_free(&b, 0);
    }
    pthread_attr_destroy(&attr);
    long spins = 0;
    while (atomic_load(&g_detached_done) < DETACHED) {
        blk_t b = blk_new(&r, 0);
        blk_free(&b, 0);
        if (++spins > 100000000L) {
            fail("detached threads did not finish");
            break;
        }
    }
    printf("stress-churn: threads=%d detached=%d blocks-left-for-main=%ld allocs=%ld verified=%ld\n", nthreads,
           DETACHED, left_verified, atomic_load(&g_allocs), atomic_load(&g_verified));
    if (left_verified == 0)
        fail("no blocks were left for the main thread");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: %s mix|churn [--threads N] [--ops N] [--no-hakmem]\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    int threads = -1;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--no-hakmem") == 0)
            g_no_hakmem = 1;
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc)
            g_ops = atol(argv[++i]);
        else {
            fprintf(stderr, "bad argument %s\n", argv[i]);
            return 2;
        }
    }
    g_check_owns = have_hakmem();
    if (strcmp(mode, "mix") == 0) {
        if (threads > 1)
            g_threads = threads;
        run_mix();
    } else if (strcmp(mode, "churn") == 0) {
        run_churn(threads > 0 ? threads : 200);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    char name[64];
    snprintf(name, sizeof name, "stress-%s", mode);
    g_checks += (int)atomic_load(&g_verified);
    g_failures += (int)atomic_load(&g_fail);
    return finish(name);
}
