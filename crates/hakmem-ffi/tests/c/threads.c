/* Thread life cycles, fork, and oversubscription (run under LD_PRELOAD).
 *
 *   threads churn [--threads N] [--alive K] [--warmup W] [--no-hakmem]
 *       N (default 10000) short-lived threads, started in waves of K
 *       (default 8; at most K alive at once). Thread t allocates 32 tiny
 *       blocks (16 B..1 KiB), 8 L2 blocks (1..32 KiB) and, when t % 4 == 0,
 *       one L2.5 block (64 KiB..1 MiB), and fills each with a pattern
 *       derived from (t, block index). Block i's fate by i % 4:
 *         0  handed to the next thread of the same wave (a pthread barrier
 *            makes sure the whole wave is alive): it verifies and frees it
 *            while the owner still runs; the owner then allocates a second
 *            batch of the same sizes, so it collects those remote frees;
 *         1  verified and freed by the owner;
 *         2  pushed on a global FIFO; a thread of a later wave pops it
 *            (each thread pops as many as it pushes, before allocating),
 *            verifies and frees it: a free arriving after the owner exited;
 *         3  left to the main thread, which verifies and frees it after
 *            joining the owner.
 *       RSS (/proc/self/statm) is printed after the first W (default 200)
 *       threads (`warmup`), every 1000 threads, and at the end (`final`,
 *       right after the main thread drained the FIFO; then `settled`, after
 *       300 ms of sleep and one slow-path allocation):
 *       `churn-rss: warmup=.. final=.. settled=.. MiB (warmup=B final=B
 *       bytes)`.
 *   threads fork [--forks N] [--no-hakmem]
 *       4 busy threads allocate and free continuously (tiny .. L2.5, and
 *       2..6 MiB now and then), swapping blocks through shared slots (so
 *       other threads free them), while the main thread forks N (default
 *       20) times. Each child verifies and frees the blocks it finds in the
 *       shared slots (owned by threads that do not exist in the child),
 *       allocates 100 MB in mixed sizes (touching every page, freeing most
 *       as it goes; odd-numbered children on two threads of their own) and
 *       _exit()s with 0 when every check held. The parent polls waitpid
 *       (WNOHANG) with a 20 s deadline per child: a child still running
 *       then is reported (with its threads' kernel wait channels) and
 *       killed (after two such children it stops forking); a nonzero
 *       exit or a signal is a failure too. Children also die by alarm(30)
 *       and with the parent (PR_SET_PDEATHSIG), so none outlives the run.
 *   threads pc [--threads N] [--items N] [--no-hakmem]
 *       N (default 16) threads: N/2 producers, the rest consumers. Each
 *       producer allocates `items` (default 30000) blocks (mostly tiny, some
 *       L2, a few L2.5), writes a header and a pattern, and sends each to a
 *       random consumer: even consumers' inboxes are lock-free stacks
 *       (CAS push, exchange-all pop; the header is the link), odd ones
 *       mutex/condvar rings of 256 entries. Consumers verify every block;
 *       1 in 8 is forwarded once to another (lock-free) consumer, 1 in 16
 *       realloc'ed first (contents must survive), the rest freed.
 *
 * Prints `FAIL ...` for every problem and ends with
 * `threads-<mode>: N checks, M failures`; exits non-zero on any failure. */
#define _GNU_SOURCE
#include "common.h"
#include "mt.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static atomic_long g_verified;


static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}
static size_t rng_in(uint64_t *r, size_t lo, size_t hi) { return lo + rng_next(r) % (hi - lo + 1); }

static double mib(size_t b) { return (double)b / (double)MiB; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* The pattern seed of block `idx` of thread `owner` (pat_word drops the
 * seed's low 4 bits). */
static uintptr_t key_seed(uint64_t owner, uint64_t idx) { return (uintptr_t)(((owner << 24) ^ idx) << 4); }

/* ============================================================== churn */

enum { C_TINY = 32, C_L2 = 8, C_BLOCKS = C_TINY + C_L2 + 1, MAX_ALIVE = 64 };

typedef struct {
    char *p;
    size_t n;
    int owner, idx;
} item_t;

/* The global FIFO (static: its storage is not in the measured heap). Each
 * thread pops as many items as it pushes, so it holds at most about one
 * wave's worth; a full ring is a test bug, reported. */
#define FIFO_CAP 65536
static item_t g_fifo[FIFO_CAP];
static size_t g_fifo_head, g_fifo_len;
static pthread_mutex_t g_fifo_lock = PTHREAD_MUTEX_INITIALIZER;

static void fifo_push(item_t it) {
    pthread_mutex_lock(&g_fifo_lock);
    int full = g_fifo_len == FIFO_CAP;
    if (!full)
        g_fifo[(g_fifo_head + g_fifo_len++) % FIFO_CAP] = it;
    pthread_mutex_unlock(&g_fifo_lock);
    if (full) {
        fail("churn: FIFO full");
        free(it.p);
    }
}
static int fifo_pop(item_t *it) {
    pthread_mutex_lock(&g_fifo_lock);
    int got = g_fifo_len > 0;
    if (got) {
        *it = g_fifo[g_fifo_head];
        g_fifo_head = (g_fifo_head + 1) % FIFO_CAP;
        g_fifo_len--;
    }
    pthread_mutex_unlock(&g_fifo_lock);
    return got;
}

static atomic_long g_c_live_frees, g_c_late_frees, g_c_own_frees, g_c_main_frees, g_c_allocs;

static void item_verify_free(item_t *it, int by, const char *how) {
    if (!it->p)
        return;
    size_t at = pat_check(it->p, it->n, key_seed((uint64_t)it->owner, (uint64_t)it->idx));
    if (at != (size_t)-1)
        fail("churn: block %d of thread %d (%p, %zu bytes) corrupted at byte %zu when %s by %d", it->idx, it->owner,
             (void *)it->p, it->n, at, how, by);
    atomic_fetch_add_explicit(&g_verified, 1, memory_order_relaxed);
    free(opaque_ptr(it->p));
    it->p = NULL;
}

static item_t item_new(int owner, int idx, size_t n) {
    item_t it = {opaque_ptr(malloc(opaque_size(n))), n, owner, idx};
    if (!it.p) {
        fail("churn: thread %d: malloc(%zu) returned NULL", owner, n);
        it.n = 0;
        return it;
    }
    pat_fill(it.p, n, key_seed((uint64_t)owner, (uint64_t)idx));
    atomic_fetch_add_explicit(&g_c_allocs, 1, memory_order_relaxed);
    return it;
}

typedef struct {
    int tid, slot;
    item_t to_next[C_BLOCKS]; /* written by the owner, taken by the neighbour */
    item_t left[C_BLOCKS];    /* for the main thread */
} churn_arg_t;

static churn_arg_t g_cargs[MAX_ALIVE];
static int g_wave_n;
static pthread_barrier_t g_wave_bar;

static size_t churn_size(uint64_t *r, int i) {
    if (i < C_TINY)
        return rng_in(r, 16, KiB);
    if (i < C_TINY + C_L2)
        return rng_in(r, KiB + 1, 32 * KiB);
    return rng_in(r, 64 * KiB, MiB);
}

static void *churn_thread(void *arg) {
    churn_arg_t *a = arg;
    int t = a->tid;
    uint64_t r = 0x9E3779B97F4A7C15ull * (uint64_t)(t + 1) + 12345;
    int nblocks = t % 4 == 0 ? C_BLOCKS : C_BLOCKS - 1;
    size_t sizes[C_BLOCKS];
    item_t mine[C_BLOCKS];
    for (int i = 0; i < nblocks; i++)
        sizes[i] = churn_size(&r, i);

    /* Frees of blocks whose owners exited (earlier waves): as many as we
     * will push. */
    int pushes = 0;
    for (int i = 0; i < nblocks; i++)
        pushes += i % 4 == 2;
    for (int k = 0; k < pushes; k++) {
        item_t it;
        if (!fifo_pop(&it))
            break;
        item_verify_free(&it, t, "popped from the FIFO");
        atomic_fetch_add_explicit(&g_c_late_frees, 1, memory_order_relaxed);
    }

    for (int i = 0; i < nblocks; i++)
        mine[i] = item_new(t, i, sizes[i]);
    for (int i = 0; i < C_BLOCKS; i++) {
        a->to_next[i].p = NULL;
        a->left[i].p = NULL;
    }
    for (int i = 0; i < nblocks; i++) {
        switch (i % 4) {
        case 0:
            a->to_next[i] = mine[i];
            break;
        case 1:
            item_verify_free(&mine[i], t, "freed by its owner");
            atomic_fetch_add_explicit(&g_c_own_frees, 1, memory_order_relaxed);
            break;
        case 2:
            fifo_push(mine[i]);
            break;
        default:
            a->left[i] = mine[i];
            break;
        }
        mine[i].p = NULL;
    }

    /* The whole wave is alive here: free the previous thread's handed
     * blocks while their owner runs. */
    pthread_barrier_wait(&g_wave_bar);
    churn_arg_t *prev = &g_cargs[(a->slot + g_wave_n - 1) % g_wave_n];
    for (int i = 0; i < C_BLOCKS; i++) {
        if (prev->to_next[i].p) {
            item_verify_free(&prev->to_next[i], t, "handed over in the wave");
            atomic_fetch_add_explicit(&g_c_live_frees, 1, memory_order_relaxed);
        }
    }
    pthread_barrier_wait(&g_wave_bar);

    /* A second batch of the same sizes: reuses what the neighbour freed
     * (collecting those remote frees). */
    for (int i = 0; i < nblocks; i++)
        mine[i] = item_new(t, 100 + i, sizes[i]);
    for (int i = nblocks - 1; i >= 0; i--) {
        item_verify_free(&mine[i], t, "second batch, freed by its owner");
        atomic_fetch_add_explicit(&g_c_own_frees, 1, memory_order_relaxed);
    }
    return NULL;
}

static void run_churn(int nthreads, int alive, int warmup) {
    double t0 = now_s();
    size_t start = rss_bytes(), warm = 0, fin, settled;
    int started = 0, next_report = 1000;
    while (started < nthreads) {
        int n = nthreads - started < alive ? nthreads - started : alive;
        pthread_t th[MAX_ALIVE];
        g_wave_n = n;
        pthread_barrier_init(&g_wave_bar, NULL, (unsigned)n);
        for (int k = 0; k < n; k++) {
            g_cargs[k].tid = started + k;
            g_cargs[k].slot = k;
            int e = pthread_create(&th[k], NULL, churn_thread, &g_cargs[k]);
            if (e != 0) {
                fail("churn: pthread_create failed for thread %d: %s", started + k, strerror(e));
                printf("threads-churn: %d checks, %ld failures\n", g_checks, atomic_load(&g_fail) + g_failures);
                exit(1);
            }
        }
        for (int k = 0; k < n; k++) {
            pthread_join(th[k], NULL);
            for (int i = 0; i < C_BLOCKS; i++) {
                if (g_cargs[k].to_next[i].p)
                    fail("churn: block %d of thread %d was not taken by its neighbour", i, g_cargs[k].tid);
                if (g_cargs[k].left[i].p) {
                    item_verify_free(&g_cargs[k].left[i], -1, "left to main");
                    atomic_fetch_add_explicit(&g_c_main_frees, 1, memory_order_relaxed);
                }
            }
        }
        pthread_barrier_destroy(&g_wave_bar);
        started += n;
        if (started >= warmup && warm == 0) {
            warm = rss_bytes();
            printf("churn-rss: after %d threads: %.1f MiB (warm-up; start %.1f MiB, %.2f s)\n", started, mib(warm),
                   mib(start), now_s() - t0);
        }
        if (started >= next_report) {
            printf("churn-rss: after %d threads: %.1f MiB (%.2f s)\n", started, mib(rss_bytes()), now_s() - t0);
            next_report += 1000;
        }
    }
    item_t it;
    while (fifo_pop(&it)) {
        item_verify_free(&it, -1, "drained from the FIFO by main");
        atomic_fetch_add_explicit(&g_c_late_frees, 1, memory_order_relaxed);
    }
    fin = rss_bytes();
    sleep_ms(300);
    free(opaque_ptr(malloc(opaque_size(3 * MiB))));
    free(opaque_ptr(malloc(opaque_size(100 * KiB))));
    settled = rss_bytes();
    printf("churn-report: threads=%d alive=%d allocs=%ld verified=%ld live-handoffs=%ld late-frees=%ld "
           "owner-frees=%ld main-frees=%ld (%.2f s)\n",
           nthreads, alive, atomic_load(&g_c_allocs), atomic_load(&g_verified), atomic_load(&g_c_live_frees),
           atomic_load(&g_c_late_frees), atomic_load(&g_c_own_frees), atomic_load(&g_c_main_frees), now_s() - t0);
    printf("churn-rss: warmup=%.1f final=%.1f settled=%.1f MiB (warmup=%zu final=%zu settled=%zu bytes)\n",
           mib(warm), mib(fin), mib(settled), warm, fin, settled);
    if (have_hakmem()) {
        char stats[1024];
        if (stats_read(stats, sizeof stats))
            printf("churn-stats: %s\n", stats);
    }
    long allocs = atomic_load(&g_c_allocs);
    long frees = atomic_load(&g_c_live_frees) + atomic_load(&g_c_late_frees) + atomic_load(&g_c_own_frees) +
                 atomic_load(&g_c_main_frees);
    CHECK(allocs == frees, "churn: %ld blocks allocated but %ld freed", allocs, frees);
    CHECK(atomic_load(&g_c_live_frees) > 0 && atomic_load(&g_c_late_frees) > 0 && atomic_load(&g_c_main_frees) > 0,
          "churn: some kind of handoff never happened");
}

/* =============================================================== fork */

/* Blocks carry their size and key in a 16-byte header; the pattern covers
 * the rest (all of it up to 64 KiB, else the first and last 4 KiB). */
typedef struct {
    uint64_t n, key;
} hdr_t;

enum { F_BUSY = 4, F_SLOTS = 128, F_SHARED = 64 };
static _Atomic(hdr_t *) g_shared[F_SHARED];
static atomic_int g_stop;
static atomic_long g_f_ops, g_f_large, g_f_swaps;

static void hblk_fill(hdr_t *h) {
    size_t body = h->n - sizeof *h;
    char *b = (char *)(h + 1);
    uintptr_t seed = (uintptr_t)(h->key << 4);
    if (body <= 64 * KiB) {
        pat_fill(b, body, seed);
    } else {
        pat_fill(b, 4 * KiB, seed);
        pat_fill(b + body - 4 * KiB, 4 * KiB, seed ^ 0x5550);
    }
}
/* 0 when intact, else the offset of the first bad byte + 1. */
static size_t hblk_check(const hdr_t *h, size_t n, uint64_t key) {
    if (h->n != n || h->key != key)
        return 1;
    size_t body = n - sizeof *h;
    const char *b = (const char *)(h + 1);
    uintptr_t seed = (uintptr_t)(key << 4);
    size_t at;
    if (body <= 64 * KiB) {
        at = pat_check(b, body, seed);
        return at == (size_t)-1 ? 0 : at + sizeof *h + 1;
    }
    at = pat_check(b, 4 * KiB, seed);
    if (at != (size_t)-1)
        return at + sizeof *h + 1;
    at = pat_check(b + body - 4 * KiB, 4 * KiB, seed ^ 0x5550);
    return at == (size_t)-1 ? 0 : at + body - 4 * KiB + sizeof *h + 1;
}

static size_t fork_size(uint64_t *r) {
    unsigned k = (unsigned)(rng_next(r) % 1000);
    if (k < 700)
        return rng_in(r, 32, KiB);
    if (k < 900)
        return rng_in(r, KiB + 1, 32 * KiB);
    if (k < 990)
        return rng_in(r, 32 * KiB + 1, MiB);
    return rng_in(r, 2 * MiB, 6 * MiB);
}

static hdr_t *hblk_new(size_t n, uint64_t key) {
    hdr_t *h = opaque_ptr(malloc(opaque_size(n)));
    if (!h)
        return NULL;
    h->n = n;
    h->key = key;
    hblk_fill(h);
    return h;
}

static void *busy_thread(void *arg) {
    int t = (int)(intptr_t)arg;
    uint64_t r = 0xD1B54A32D192ED03ull * (uint64_t)(t + 3);
    hdr_t *slots[F_SLOTS] = {0};
    uint64_t serial = 0;
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        unsigned i = (unsigned)(rng_next(&r) % F_SLOTS);
        if (!slots[i]) {
            size_t n = fork_size(&r);
            uint64_t key = ((uint64_t)(t + 1) << 40) | serial++;
            slots[i] = hblk_new(n, key);
            if (!slots[i])
                fail("fork: busy thread %d: malloc(%zu) returned NULL", t, n);
            else if (n >= 2 * MiB)
                atomic_fetch_add_explicit(&g_f_large, 1, memory_order_relaxed);
        } else if (rng_next(&r) % 4 == 0) {
            /* Swap it into a shared slot; free what was there (another
             * thread's block, or one a child will also free). */
            hdr_t *old = atomic_exchange(&g_shared[rng_next(&r) % F_SHARED], slots[i]);
            slots[i] = NULL;
            if (old) {
                size_t bad = hblk_check(old, old->n, old->key);
                if (bad)
                    fail("fork: shared block %p (%zu bytes) corrupted at %zu", (void *)old, (size_t)old->n, bad - 1);
                atomic_fetch_add_explicit(&g_verified, 1, memory_order_relaxed);
                free(old);
            }
            atomic_fetch_add_explicit(&g_f_swaps, 1, memory_order_relaxed);
        } else {
            size_t bad = hblk_check(slots[i], slots[i]->n, slots[i]->key);
            if (bad)
                fail("fork: block %p (%zu bytes) of thread %d corrupted at %zu", (void *)slots[i],
                     (size_t)slots[i]->n, t, bad - 1);
            atomic_fetch_add_explicit(&g_verified, 1, memory_order_relaxed);
            free(slots[i]);
            slots[i] = NULL;
        }
        atomic_fetch_add_explicit(&g_f_ops, 1, memory_order_relaxed);
    }
    for (int i = 0; i < F_SLOTS; i++)
        free(slots[i]);
    return NULL;
}

/* ---- in the child: no stdio, no locks the parent's threads may hold. */

static atomic_int c_bad;

__attribute__((format(printf, 1, 2))) static void child_fail(const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(buf, sizeof buf, "FAIL child %d: ", (int)getpid());
    if (n > 0 && (size_t)n < sizeof buf)
        n += vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof buf - 1)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    if (write(1, buf, (size_t)n) < 0) {
    }
    atomic_fetch_add(&c_bad, 1);
}

/* Allocates `total` bytes in mixed sizes, touching every page, keeping a
 * window of 32 live blocks (the rest freed, verified, as it goes). */
static void *child_alloc(void *arg) {
    size_t total = (size_t)arg;
    uint64_t r = 0xABCDEF12345ull ^ (uint64_t)getpid() ^ (uint64_t)total ^ (uint64_t)(uintptr_t)&r;
    enum { WIN = 32 };
    hdr_t *win[WIN] = {0};
    size_t done = 0;
    uint64_t serial = 0;
    for (unsigned i = 0; done < total; i++) {
        size_t n = fork_size(&r);
        hdr_t *h = opaque_ptr(malloc(opaque_size(n)));
        if (!h) {
            child_fail("malloc(%zu) returned NULL", n);
            return NULL;
        }
        memset(h, 0x5a, n); /* touch every page */
        h->n = n;
        h->key = (0xCCull << 40) | serial++;
        hblk_fill(h);
        done += n;
        hdr_t **w = &win[i % WIN];
        if (*w) {
            size_t bad = hblk_check(*w, (*w)->n, (*w)->key);
            if (bad)
                child_fail("block %p (%zu bytes) corrupted at %zu", (void *)*w, (size_t)(*w)->n, bad - 1);
            free(*w);
        }
        *w = h;
    }
    /* Free half of the window; the rest goes with _exit. */
    for (int i = 0; i < WIN; i += 2)
        if (win[i]) {
            if (hblk_check(win[i], win[i]->n, win[i]->key))
                child_fail("block %p corrupted at the end", (void *)win[i]);
            free(win[i]);
        }
    return NULL;
}

__attribute__((noreturn)) static void child_main(int f) {
    /* Never outlive the parent, nor the parent's 20 s deadline by much:
     * a hung child must not keep the test's output pipes open. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(30);
    /* Blocks the parent's threads left in the shared slots: their owners do
     * not exist here. */
    for (int i = 0; i < F_SHARED; i++) {
        hdr_t *h = atomic_exchange(&g_shared[i], NULL);
        if (h) {
            size_t bad = hblk_check(h, h->n, h->key);
            if (bad)
                child_fail("inherited shared block %p corrupted at %zu", (void *)h, bad - 1);
            free(h);
        }
    }
    size_t total = 100 * 1000 * 1000;
    if (f % 2) {
        pthread_t th;
        int e = pthread_create(&th, NULL, child_alloc, (void *)(total / 2));
        if (e != 0) {
            child_fail("pthread_create: %d", e);
            child_alloc((void *)total);
        } else {
            child_alloc((void *)(total / 2));
            pthread_join(th, NULL);
        }
    } else {
        child_alloc((void *)total);
    }
    _exit(atomic_load(&c_bad) ? 3 : 0);
}

/* Prints the kernel wait channel and state of every thread of `pid`. */
static void report_hung(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p2[192], wchan[128] = "", st[256] = "";
        snprintf(p2, sizeof p2, "%s/%.32s/wchan", path, e->d_name);
        FILE *f = fopen(p2, "r");
        if (f) {
            size_t n = fread(wchan, 1, sizeof wchan - 1, f);
            wchan[n] = 0;
            fclose(f);
        }
        snprintf(p2, sizeof p2, "%s/%.32s/stat", path, e->d_name);
        f = fopen(p2, "r");
        if (f) {
            size_t m = fread(st, 1, sizeof st - 1, f);
            st[m] = 0;
            fclose(f);
        }
        char *nl = strchr(st, '\n');
        if (nl)
            *nl = 0;
        printf("  hung child %d thread %s: wchan=%s stat=%.80s\n", (int)pid, e->d_name, wchan, st);
    }
    closedir(d);
}

static void run_fork(int forks) {
    double t0 = now_s();
    pthread_t th[F_BUSY];
    for (int t = 0; t < F_BUSY; t++)
        if (pthread_create(&th[t], NULL, busy_thread, (void *)(intptr_t)t) != 0) {
            fail("fork: pthread_create failed");
            exit(1);
        }
    int ok = 0;
    double worst = 0;
    int hung = 0;
    for (int f = 0; f < forks && hung < 2; f++) {
        sleep_ms(20 + f % 3 * 10); /* let the busy threads get going */
        pid_t pid = fork();
        if (pid < 0) {
            fail("fork %d: fork() failed: %s", f, strerror(errno));
            continue;
        }
        if (pid == 0)
            child_main(f);
        double start = now_s(), deadline = start + 20.0;
        int status = 0;
        pid_t w = 0;
        while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now_s() < deadline)
            sleep_ms(2);
        double took = now_s() - start;
        if (took > worst)
            worst = took;
        if (w == 0) {
            fail("fork %d: child %d still running after %.0f s (deadlock?): killed", f, (int)pid, took);
            report_hung(pid);
            kill(pid, SIGKILL);
            hung++;
            waitpid(pid, &status, 0);
        } else if (w < 0) {
            fail("fork %d: waitpid(%d): %s", f, (int)pid, strerror(errno));
        } else if (WIFSIGNALED(status)) {
            fail("fork %d: child %d killed by signal %d (%s)", f, (int)pid, WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fail("fork %d: child %d exited with status %d", f, (int)pid, WEXITSTATUS(status));
        } else {
            ok++;
        }
    }
    atomic_store(&g_stop, 1);
    for (int t = 0; t < F_BUSY; t++)
        pthread_join(th[t], NULL);
    for (int i = 0; i < F_SHARED; i++) {
        hdr_t *h = atomic_exchange(&g_shared[i], NULL);
        if (h) {
            size_t bad = hblk_check(h, h->n, h->key);
            if (bad)
                fail("fork: shared block %p corrupted at %zu", (void *)h, bad - 1);
            atomic_fetch_add_explicit(&g_verified, 1, memory_order_relaxed);
            free(h);
        }
    }
    printf("fork-report: forks=%d ok=%d busy-ops=%ld large=%ld swaps=%ld verified=%ld slowest-child=%.2f s "
           "(%.2f s)\n",
           forks, ok, atomic_load(&g_f_ops), atomic_load(&g_f_large), atomic_load(&g_f_swaps),
           atomic_load(&g_verified), worst, now_s() - t0);
    CHECK(ok == forks, "fork: only %d of %d children exited cleanly", ok, forks);
    CHECK(atomic_load(&g_f_large) > 0, "fork: the busy threads never allocated a large block");
}

/* ================================================= producer / consumer */

typedef struct node {
    struct node *next;
    uint64_t n, key, hops;
} node_t;

enum { RING = 256 };
typedef struct {
    /* lock-free stack (even consumers) */
    _Atomic(node_t *) top;
    atomic_long pending;
    /* mutex ring (odd consumers) */
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    node_t *ring[RING];
    size_t head, len;
    char pad[64];
} inbox_t;

static inbox_t *g_in;
static int g_prod, g_cons;
static long g_items = 30000;
static atomic_long g_p_sent, g_p_freed, g_p_forwarded, g_p_reallocs;
static atomic_int g_prod_done;

static void *body_of(node_t *b) { return b + 1; }
static size_t body_len(const node_t *b) { return b->n - sizeof *b; }

/* Producers wait while a lock-free inbox holds over 1024 blocks; forwards
 * (from consumers) never wait, or two consumers could wait on each other. */
static void inbox_send(int c, node_t *b, int may_wait) {
    inbox_t *q = &g_in[c];
    if (c % 2 == 0) {
        while (may_wait && atomic_load_explicit(&q->pending, memory_order_relaxed) > 1024)
            sched_yield();
        atomic_fetch_add(&q->pending, 1);
        node_t *top = atomic_load_explicit(&q->top, memory_order_relaxed);
        do
            b->next = top;
        while (!atomic_compare_exchange_weak_explicit(&q->top, &top, b, memory_order_release, memory_order_relaxed));
    } else {
        pthread_mutex_lock(&q->lock);
        while (q->len == RING)
            pthread_cond_wait(&q->not_full, &q->lock);
        q->ring[(q->head + q->len++) % RING] = b;
        pthread_cond_signal(&q->not_empty);
        pthread_mutex_unlock(&q->lock);
    }
}

static int all_done(void) {
    return atomic_load(&g_prod_done) == g_prod && atomic_load(&g_p_freed) == atomic_load(&g_p_sent);
}

/* Takes a batch of blocks (a list linked through `next`); NULL when none
 * came within about a millisecond. */
static node_t *inbox_take(int c) {
    inbox_t *q = &g_in[c];
    if (c % 2 == 0) {
        node_t *list = atomic_exchange_explicit(&q->top, NULL, memory_order_acquire);
        if (!list) {
            sched_yield();
            return NULL;
        }
        long n = 0;
        for (node_t *b = list; b; b = b->next)
            n++;
        atomic_fetch_sub(&q->pending, n);
        return list;
    }
    pthread_mutex_lock(&q->lock);
    if (q->len == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&q->not_empty, &q->lock, &ts);
    }
    node_t *list = NULL;
    while (q->len) {
        node_t *b = q->ring[q->head];
        q->head = (q->head + 1) % RING;
        q->len--;
        b->next = list;
        list = b;
    }
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->lock);
    return list;
}

static size_t pc_size(uint64_t *r) {
    unsigned k = (unsigned)(rng_next(r) % 1000);
    if (k < 915)
        return rng_in(r, sizeof(node_t), KiB);
    if (k < 997)
        return rng_in(r, KiB + 1, 32 * KiB);
    return rng_in(r, 64 * KiB, MiB);
}

static void *producer(void *arg) {
    int p = (int)(intptr_t)arg;
    uint64_t r = 0x2545F4914F6CDD1Dull * (uint64_t)(p + 11);
    for (long i = 0; i < g_items; i++) {
        size_t n = pc_size(&r);
        node_t *b = opaque_ptr(malloc(opaque_size(n)));
        if (!b) {
            fail("pc: producer %d: malloc(%zu) returned NULL", p, n);
            continue;
        }
        b->n = n;
        b->key = ((uint64_t)(p + 1) << 32) | (uint64_t)i;
        b->hops = 0;
        pat_fill(body_of(b), body_len(b), (uintptr_t)(b->key << 4));
        atomic_fetch_add(&g_p_sent, 1);
        inbox_send((int)(rng_next(&r) % (unsigned)g_cons), b, 1);
        if (i % 64 == 0) /* some local churn too */
            free(opaque_ptr(malloc(opaque_size(rng_in(&r, 8, 2 * KiB)))));
    }
    atomic_fetch_add(&g_prod_done, 1);
    return NULL;
}

static int pc_verify(node_t *b, int c, const char *when) {
    uint64_t p = b->key >> 32;
    if (p < 1 || p > (uint64_t)g_prod || (b->key & 0xffffffffull) >= (uint64_t)g_items || b->n < sizeof *b ||
        b->n > MiB) {
        fail("pc: consumer %d: block %p has a bad header (n=%lu key=%#lx) %s", c, (void *)b, (unsigned long)b->n,
             (unsigned long)b->key, when);
        return 0;
    }
    size_t at = pat_check(body_of(b), body_len(b), (uintptr_t)(b->key << 4));
    atomic_fetch_add_explicit(&g_verified, 1, memory_order_relaxed);
    if (at != (size_t)-1) {
        fail("pc: consumer %d: block %p (%lu bytes, key %#lx) corrupted at byte %zu %s", c, (void *)b,
             (unsigned long)b->n, (unsigned long)b->key, at + sizeof *b, when);
        return 0;
    }
    return 1;
}

/* Grows `b` to `m` bytes; the contents must survive. */
__attribute__((noinline)) static node_t *pc_realloc(node_t *b, size_t m, int c) {
    node_t *q = opaque_ptr(realloc(b, opaque_size(m)));
    atomic_fetch_add(&g_p_reallocs, 1);
    if (!q) {
        fail("pc: consumer %d: realloc(.., %zu) returned NULL", c, m);
        return b;
    }
    pc_verify(q, c, "after realloc");
    return q;
}

static void *consumer(void *arg) {
    int c = (int)(intptr_t)arg;
    uint64_t r = 0x9E3779B97F4A7C15ull * (uint64_t)(c + 101);
    while (!all_done()) {
        node_t *list = inbox_take(c);
        while (list) {
            node_t *b = list;
            list = b->next;
            pc_verify(b, c, "on receipt");
            unsigned act = (unsigned)(rng_next(&r) % 16);
            if (act < 2 && b->hops == 0 && g_cons > 1) {
                b->hops = 1;
                int to = (int)(rng_next(&r) % (unsigned)g_cons) & ~1; /* a lock-free inbox */
                if (to == c)
                    to = (to + 2) % g_cons & ~1;
                atomic_fetch_add(&g_p_forwarded, 1);
                inbox_send(to, b, 0);
                continue;
            }
            if (act == 2)
                b = pc_realloc(b, b->n + rng_in(&r, 1, 4 * KiB), c);
            free(b);
            atomic_fetch_add(&g_p_freed, 1);
        }
    }
    return NULL;
}

static void run_pc(int nthreads) {
    double t0 = now_s();
    if (nthreads < 2)
        nthreads = 2;
    g_prod = nthreads / 2;
    g_cons = nthreads - g_prod;
    g_in = calloc((size_t)g_cons, sizeof *g_in);
    for (int c = 0; c < g_cons; c++) {
        pthread_mutex_init(&g_in[c].lock, NULL);
        pthread_cond_init(&g_in[c].not_empty, NULL);
        pthread_cond_init(&g_in[c].not_full, NULL);
    }
    pthread_t *th = calloc((size_t)nthreads, sizeof *th);
    for (int i = 0; i < nthreads; i++) {
        int e = i < g_cons ? pthread_create(&th[i], NULL, consumer, (void *)(intptr_t)i)
                           : pthread_create(&th[i], NULL, producer, (void *)(intptr_t)(i - g_cons));
        if (e != 0) {
            fail("pc: pthread_create failed: %s", strerror(e));
            exit(1);
        }
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    free(th);
    for (int c = 0; c < g_cons; c++) {
        if (atomic_load(&g_in[c].top) || g_in[c].len)
            fail("pc: consumer %d's inbox not empty at the end", c);
        pthread_mutex_destroy(&g_in[c].lock);
        pthread_cond_destroy(&g_in[c].not_empty);
        pthread_cond_destroy(&g_in[c].not_full);
    }
    free(g_in);
    printf("pc-report: threads=%d producers=%d consumers=%d sent=%ld freed=%ld forwarded=%ld reallocs=%ld "
           "verified=%ld (%.2f s)\n",
           nthreads, g_prod, g_cons, atomic_load(&g_p_sent), atomic_load(&g_p_freed), atomic_load(&g_p_forwarded),
           atomic_load(&g_p_reallocs), atomic_load(&g_verified), now_s() - t0);
    CHECK(atomic_load(&g_p_sent) == (long)g_prod * g_items, "pc: sent %ld blocks, expected %ld",
          atomic_load(&g_p_sent), (long)g_prod * g_items);
    CHECK(atomic_load(&g_p_freed) == atomic_load(&g_p_sent), "pc: freed %ld of %ld blocks", atomic_load(&g_p_freed),
          atomic_load(&g_p_sent));
    CHECK((atomic_load(&g_p_forwarded) > 0 || g_cons == 1) && atomic_load(&g_p_reallocs) > 0,
          "pc: no forwards or reallocs");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: %s churn|fork|pc [--threads N] [--alive K] [--warmup W] [--forks N] [--items N] "
                        "[--no-hakmem]\n",
                argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    int threads = -1, alive = 8, warmup = 200, forks = 20;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--no-hakmem") == 0)
            g_no_hakmem = 1;
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--alive") == 0 && i + 1 < argc)
            alive = atoi(argv[++i]);
        else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc)
            warmup = atoi(argv[++i]);
        else if (strcmp(argv[i], "--forks") == 0 && i + 1 < argc)
            forks = atoi(argv[++i]);
        else if (strcmp(argv[i], "--items") == 0 && i + 1 < argc)
            g_items = atol(argv[++i]);
        else {
            fprintf(stderr, "bad argument %s\n", argv[i]);
            return 2;
        }
    }
    char name[64];
    snprintf(name, sizeof name, "threads-%s", mode);
    if (!have_hakmem() && !g_no_hakmem)
        return finish(name);
    if (strcmp(mode, "churn") == 0) {
        if (alive < 1 || alive > MAX_ALIVE) {
            fprintf(stderr, "--alive must be 1..%d\n", MAX_ALIVE);
            return 2;
        }
        run_churn(threads > 0 ? threads : 10000, alive, warmup);
    } else if (strcmp(mode, "fork") == 0) {
        run_fork(forks);
    } else if (strcmp(mode, "pc") == 0) {
        run_pc(threads > 0 ? threads : 16);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    g_checks += (int)atomic_load(&g_verified);
    g_failures += (int)atomic_load(&g_fail);
    return finish(name);
}
