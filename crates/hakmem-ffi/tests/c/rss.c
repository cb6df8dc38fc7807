/* Memory return: after a program frees what it allocated, its resident set
 * must fall back near where it started.
 *
 * Each phase: RSS before (/proc/self/statm: resident pages x page size);
 * two threads allocate ~1 GiB together in mixed sizes (by bytes: 40% in
 * 16 B..1 KiB, 30% in 1..32 KiB, 20% in 32 KiB..1 MiB, 10% in 2..16 MiB
 * blocks), touching every page of every block; RSS peak; then the two
 * threads free everything in one random order (each frees half of the
 * blocks, about half of them allocated by the other thread) and exit: first
 * thread 0 frees its half and exits (leaving its slabs that still hold
 * thread 1's share to be abandoned), then thread 1 frees its half (into
 * those abandoned slabs, among others) and exits. The order is fixed so the
 * outcome does not depend on which thread happens to finish first.
 *
 *   delay  sleep 1.5 s (past the purge delay, HAKMEM_PURGE_DELAY_MS=50, and
 *          the BigCache's age limit), then one small allocator call that
 *          reaches a slow path: free(malloc(3 MiB)); free(malloc(100 KiB))
 *          (purges run on allocator activity, not in an idle process);
 *   trim   malloc_trim(0) at once (gives everything back, whatever the
 *          delay);
 *   late   as `delay`, but thread 1 holds back up to 12 blocks of 32 KiB..
 *          1 MiB that thread 0 allocated (each in its own L2.5 slab, which
 *          thread 0's exit abandoned), makes one slow-path call of its own
 *          (free(malloc(3 MiB)): a purge pass runs while those slabs are
 *          still in use), then frees them and exits. The slabs become free
 *          after that pass and sit idle through the sleep like everything
 *          else: the pass after the sleep must give them back too.
 *
 * After each phase RSS must be <= 2 x start + 16 MiB (start: RSS when the
 * program began), and the peak must be >= the phase's before + 900 MiB (the
 * memory really was resident). Phases run in the order given (default:
 * delay trim). Prints `rss-<phase>: start=S before=B peak=P freed=F
 * after=A MiB ...` per phase (freed: right after the frees) and ends with
 * `rss: N checks, M failures`. */
#define _GNU_SOURCE
#include "common.h"
#include "mt.h"

#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define TOTAL ((size_t)1 << 30)

typedef struct {
    char *p;
    size_t n;
    int owner; /* the worker that allocated it */
} blk_t;

static blk_t *g_blocks; /* mmap'ed: the bookkeeping is not in the measured heap */
static size_t g_count, g_cap;
static pthread_barrier_t g_bar;
static sem_t g_second; /* worker 1 frees only after worker 0 has exited */
static int g_late; /* the `late` phase */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static size_t rnd_in(size_t lo, size_t hi) { return lo + rnd() % (hi - lo + 1); }

static double mib(size_t b) { return (double)b / (double)MiB; }

/* The block plan: sizes per class until each class's byte budget is
 * reached, then shuffled. */
static void plan(void) {
    static const struct {
        size_t lo, hi, percent;
    } mix[] = {{16, KiB, 40}, {KiB + 1, 32 * KiB, 30}, {32 * KiB + 1, MiB, 20}, {2 * MiB, 16 * MiB, 10}};
    g_count = 0;
    for (size_t c = 0; c < 4; c++) {
        size_t budget = TOTAL / 100 * mix[c].percent, got = 0;
        while (got < budget && g_count < g_cap) {
            size_t n = rnd_in(mix[c].lo, mix[c].hi);
            g_blocks[g_count].p = NULL;
            g_blocks[g_count++].n = n;
            got += n;
        }
    }
    for (size_t i = g_count; i > 1; i--) {
        size_t j = rnd() % i;
        blk_t t = g_blocks[i - 1];
        g_blocks[i - 1] = g_blocks[j];
        g_blocks[j] = t;
    }
}

static int g_bad;

static void *worker(void *arg) {
    size_t t = (size_t)arg;
    /* Allocate every other block of the plan, touching every page. */
    for (size_t i = t; i < g_count; i += 2) {
        blk_t *b = &g_blocks[i];
        b->p = opaque_ptr(malloc(opaque_size(b->n)));
        if (!b->p) {
            __atomic_add_fetch(&g_bad, 1, __ATOMIC_RELAXED);
            continue;
        }
        b->owner = (int)t;
        memset(b->p, (int)(i & 0xff), b->n);
    }
    pthread_barrier_wait(&g_bar); /* main measures the peak, shuffles */
    pthread_barrier_wait(&g_bar);
    if (t == 1)
        sem_wait(&g_second);
    /* Free one half of the (reshuffled) blocks. */
    size_t half = g_count / 2, lo = t ? half : 0, hi = t ? g_count : half;
    enum { HOLD = 12 };
    size_t held[HOLD], nheld = 0;
    uintptr_t held_slab[HOLD];
    for (size_t i = lo; i < hi; i++) {
        blk_t *b = &g_blocks[i];
        if (!b->p)
            continue;
        if (g_late && t == 1 && nheld < HOLD && b->owner == 0 && b->n > 32 * KiB && b->n <= MiB) {
            uintptr_t slab = (uintptr_t)b->p & ~(uintptr_t)(4 * MiB - 1);
            size_t k = 0;
            while (k < nheld && held_slab[k] != slab)
                k++;
            if (k == nheld) {
                held_slab[nheld] = slab;
                held[nheld++] = i;
                continue;
            }
        }
        unsigned char first = (unsigned char)b->p[0], last = (unsigned char)b->p[b->n - 1];
        if (first != last)
            __atomic_add_fetch(&g_bad, 1, __ATOMIC_RELAXED);
        free(b->p);
        b->p = NULL;
    }
    if (nheld) {
        free(opaque_ptr(malloc(opaque_size(3 * MiB)))); /* a purge pass, the held slabs in use */
        for (size_t k = 0; k < nheld; k++) {
            free(g_blocks[held[k]].p);
            g_blocks[held[k]].p = NULL;
        }
    }
    if (g_late && t == 1 && nheld < HOLD) {
        printf("FAIL late: only %zu blocks held back\n", nheld);
        __atomic_add_fetch(&g_bad, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static size_t g_start; /* RSS at program start: the baseline of every phase */

/* On failure: where the resident memory is. Anonymous mappings whose length
 * is a multiple of 4 MiB (hakmem's segments and mappings) are grouped by
 * their resident KiB, largest totals first. */
static void smaps_summary(const char *name) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return;
    enum { MAXG = 64 };
    unsigned long grp_rss[MAXG], grp_n[MAXG], other = 0, chunks_rss = 0;
    int ng = 0, anon_chunk = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, kb;
        char path[256] = "";
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %255s", &lo, &hi, path) >= 2) {
            anon_chunk = path[0] == '\0' && (hi - lo) % (4 * MiB) == 0;
        } else if (sscanf(line, "Rss: %lu kB", &kb) == 1) {
            if (!anon_chunk) {
                other += kb;
                continue;
            }
            chunks_rss += kb;
            int g = 0;
            while (g < ng && grp_rss[g] != kb)
                g++;
            if (g == ng && ng < MAXG) {
                grp_rss[ng] = kb;
                grp_n[ng++] = 0;
            }
            if (g < MAXG)
                grp_n[g]++;
        }
    }
    fclose(f);
    printf("rss-%s smaps: %lu KiB resident in 4 MiB-multiple anonymous mappings, %lu KiB elsewhere; by KiB resident "
           "per mapping (count):",
           name, chunks_rss, other);
    for (int shown = 0; shown < 10; shown++) {
        int best = -1;
        for (int g = 0; g < ng; g++)
            if (grp_n[g] && (best < 0 || grp_rss[g] * grp_n[g] > grp_rss[best] * grp_n[best]))
                best = g;
        if (best < 0 || grp_rss[best] == 0)
            break;
        printf(" %lu(x%lu)", grp_rss[best], grp_n[best]);
        grp_n[best] = 0;
    }
    printf("\n");
}

static void phase(const char *name) {
    int trim = strcmp(name, "trim") == 0;
    g_late = strcmp(name, "late") == 0;
    double t0 = now_s();
    size_t before = rss_bytes();
    plan();
    g_bad = 0;
    pthread_barrier_init(&g_bar, NULL, 3);
    sem_init(&g_second, 0, 0);
    pthread_t th[2];
    for (size_t t = 0; t < 2; t++)
        if (!CHECK(pthread_create(&th[t], NULL, worker, (void *)t) == 0, "pthread_create"))
            return;
    pthread_barrier_wait(&g_bar);
    size_t peak = rss_bytes();
    size_t blocks = g_count;
    /* Reshuffle: each thread frees a random half, mostly others' blocks. */
    for (size_t i = g_count; i > 1; i--) {
        size_t j = rnd() % i;
        blk_t t = g_blocks[i - 1];
        g_blocks[i - 1] = g_blocks[j];
        g_blocks[j] = t;
    }
    pthread_barrier_wait(&g_bar);
    pthread_join(th[0], NULL);
    sem_post(&g_second);
    pthread_join(th[1], NULL);
    pthread_barrier_destroy(&g_bar);
    sem_destroy(&g_second);
    /* The block table's pages are not the allocator's: drop them. */
    madvise(g_blocks, g_cap * sizeof *g_blocks, MADV_DONTNEED);
    size_t freed = rss_bytes();
    if (trim) {
        malloc_trim(0);
    } else {
        sleep_ms(1500);
        free(opaque_ptr(malloc(opaque_size(3 * MiB))));
        free(opaque_ptr(malloc(opaque_size(100 * KiB))));
    }
    size_t after = rss_bytes();
    char stats[1024] = "";
    if (have_hakmem())
        stats_read(stats, sizeof stats);
    printf("rss-%s: start=%.1f before=%.1f peak=%.1f freed=%.1f after=%.1f MiB (%zu blocks, %.1f s) %s\n", name,
           mib(g_start), mib(before), mib(peak), mib(freed), mib(after), blocks, now_s() - t0, stats);
    CHECK(g_bad == 0, "%s: %d allocations failed or blocks lost their contents", name, g_bad);
    CHECK(peak >= before + 900 * MiB, "%s: peak RSS %.1f MiB is not 900 MiB above before (%.1f MiB)", name, mib(peak),
          mib(before));
    if (!CHECK(after <= 2 * g_start + 16 * MiB,
               "%s: RSS after freeing everything is %.1f MiB > 2 x start (%.1f MiB) + 16 MiB (peak %.1f MiB)", name,
               mib(after), mib(g_start), mib(peak)))
        smaps_summary(name);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *phases[8];
    int np = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-hakmem") == 0) {
            g_no_hakmem = 1;
        } else if ((strcmp(argv[i], "delay") == 0 || strcmp(argv[i], "trim") == 0 || strcmp(argv[i], "late") == 0) &&
                   np < 8) {
            phases[np++] = argv[i];
        } else {
            fprintf(stderr, "usage: %s [delay|trim|late]... [--no-hakmem]\n", argv[0]);
            return 2;
        }
    }
    if (np == 0) {
        phases[np++] = "delay";
        phases[np++] = "trim";
    }
    if (!have_hakmem() && !g_no_hakmem)
        return finish("rss");
    g_start = rss_bytes();
    g_cap = 4 * 1000 * 1000;
    g_blocks = mmap(NULL, g_cap * sizeof *g_blocks, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!CHECK(g_blocks != MAP_FAILED, "mmap of the block table failed"))
        return finish("rss");
    for (int i = 0; i < np; i++)
        phase(phases[i]);
    munmap(g_blocks, g_cap * sizeof *g_blocks);
    return finish("rss");
}
