/* Memory given back while a program idles (the background purger).
 *
 *   idle burst <tail> [threads]   allocate ~1 GiB in mixed sizes (by count: 70% of
 *                                 8 B-1 KiB, 25% of 2-256 KiB, 5% of 1-9 MiB; every
 *                                 page touched) on `threads` threads (default 1),
 *                                 free it all, then for 3 s either keep making one
 *                                 malloc(64)/free every 10 ms (`tail` = calls) or
 *                                 make no call at all (`tail` = sleep); prints
 *                                 `idle-burst: peak=.. after=.. MiB` and checks
 *                                 after <= IDLE_MAX_MIB (default 48).
 *   idle remote <threads> [small] each thread allocates its share of ~1 GiB (`small`:
 *                                 all of 8 B-32 KiB, from the slab tiers), hands
 *                                 the blocks to the next thread, which frees them;
 *                                 the owners stay alive and idle; then malloc_trim(0)
 *                                 and RSS must be <= IDLE_MAX_MIB (default 64).
 *   idle lazyzero                 under HAKMEM_FREE_POLICY=free: calloc after a lazy purge
 *                                 of the same run pages reads zero.
 *   idle forkbusy                 fork 40 times while 4 threads allocate and free and the
 *                                 purger runs: every child allocates and exits 0.
 *   idle sleep <seconds>          frees 128 MiB, sleeps 3 s (the purge), then <seconds>: the
 *                                 purger thread's CPU time in those must stay <= 10 ms.
 *
 * Under glibc (--no-hakmem) only the figures are printed. */
#include "common.h"
#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>

static size_t rss_mib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (size_t)sysconf(_SC_PAGESIZE) >> 20;
}

static size_t peak_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (size_t)ru.ru_maxrss >> 10;
}

/* The id of the thread named hakmem-purge, 0 if there is none. */
static long purger_tid(void) {
    DIR *d = opendir("/proc/self/task");
    long tid = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[320], comm[32] = {0};
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (!fgets(comm, sizeof comm, f))
            comm[0] = 0;
        fclose(f);
        if (strncmp(comm, "hakmem-purge", 12) == 0)
            tid = strtol(e->d_name, NULL, 10);
    }
    if (d)
        closedir(d);
    return tid;
}

/* CPU time (us) of thread `tid`, -1 if unknown; `runs`: how many times it was scheduled
 * (schedstat). Plain system calls and a stack buffer: no allocation, which would wake the
 * purger. */
static long thread_cpu_us(long tid, long *runs) {
    char path[64], buf[128];
    snprintf(path, sizeof path, "/proc/self/task/%ld/schedstat", tid);
    int fd = open(path, O_RDONLY);
    if (tid <= 0 || fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    unsigned long long ns = 0, wait = 0, slices = 0;
    buf[n > 0 ? n : 0] = 0;
    if (sscanf(buf, "%llu %llu %llu", &ns, &wait, &slices) != 3)
        return -1;
    *runs = (long)slices;
    return (long)(ns / 1000);
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Whether blocks stay at most 32 KiB (all from the slab tiers). */
static int g_small;

static size_t pick_size(uint64_t *s) {
    uint64_t r = rng_next(s) % 100;
    if (g_small)
        return r < 70 ? 8 + rng_next(s) % 1017 : 2048 + rng_next(s) % (30 * 1024 + 1);
    if (r < 70)
        return 8 + rng_next(s) % 1017;
    if (r < 95)
        return 2048 + rng_next(s) % (256 * 1024 - 2048 + 1);
    return (1u << 20) + rng_next(s) % (8u << 20);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

#define TOTAL ((size_t)1 << 30)
#define MAXB 2000000

struct share {
    uint64_t seed;
    size_t bytes;
    void **blocks;
    size_t n;
    struct share *next; /* who frees this share's blocks (remote) */
    pthread_barrier_t *bar;
    int remote;
};

static void fill(struct share *sh) {
    uint64_t s = sh->seed;
    size_t total = 0;
    sh->n = 0;
    while (total < sh->bytes && sh->n < MAXB) {
        size_t n = pick_size(&s);
        char *p = malloc(n);
        if (!CHECK(p != NULL, "malloc(%zu)", n))
            break;
        memset(p, (int)(n & 0xff) | 1, n);
        sh->blocks[sh->n++] = p;
        total += n;
    }
}

static void drain(struct share *sh) {
    for (size_t i = 0; i < sh->n; i++)
        free(sh->blocks[i]);
    sh->n = 0;
}

static void *burst_thread(void *arg) {
    struct share *sh = arg;
    fill(sh);
    pthread_barrier_wait(sh->bar);
    drain(sh->remote ? sh->next : sh);
    pthread_barrier_wait(sh->bar);
    /* Stay alive and idle while the main thread measures. */
    pthread_barrier_wait(sh->bar);
    return NULL;
}

static size_t max_mib(size_t dflt) {
    const char *e = getenv("IDLE_MAX_MIB");
    return e ? (size_t)strtoul(e, NULL, 10) : dflt;
}

/* Runs the fill/free on `nt` threads (the main thread's share too when nt == 1); returns
 * with the helper threads alive and idle at their last barrier (join them with `finish`). */
static pthread_t g_tids[16];
static pthread_barrier_t g_bar;
static struct share g_sh[16];

static void start(int nt, int remote) {
    if (nt == 1 && !remote) {
        g_sh[0] = (struct share){.seed = 42, .bytes = TOTAL};
        g_sh[0].blocks = calloc(MAXB, sizeof(void *));
        fill(&g_sh[0]);
        drain(&g_sh[0]);
        return;
    }
    pthread_barrier_init(&g_bar, NULL, (unsigned)nt + 1);
    for (int i = 0; i < nt; i++) {
        g_sh[i] = (struct share){.seed = 42 + (uint64_t)i * 7919, .bytes = TOTAL / (size_t)nt};
        g_sh[i].blocks = calloc(MAXB, sizeof(void *));
        g_sh[i].next = &g_sh[(i + 1) % nt];
        g_sh[i].bar = &g_bar;
        g_sh[i].remote = remote;
    }
    for (int i = 0; i < nt; i++)
        pthread_create(&g_tids[i], NULL, burst_thread, &g_sh[i]);
    pthread_barrier_wait(&g_bar); /* filled */
    pthread_barrier_wait(&g_bar); /* freed */
}

static void join_all(int nt, int remote) {
    if (nt == 1 && !remote) {
        free(g_sh[0].blocks);
        return;
    }
    pthread_barrier_wait(&g_bar);
    for (int i = 0; i < nt; i++) {
        pthread_join(g_tids[i], NULL);
        free(g_sh[i].blocks);
    }
}

/* Under HAKMEM_FREE_POLICY=free, freed run pages are given back lazily (MADV_FREE), so they
 * may keep their contents: a calloc of them after the purge must still read zero. Sizes from
 * both run engines (4 KiB and 256 KiB pages). */
static void lazy_zero(void) {
    size_t sizes[] = {200 << 10, 900 << 10, 6 << 20, 20 << 20};
    for (int k = 0; k < 4; k++) {
        size_t n = sizes[k];
        unsigned char *p = malloc(n);
        if (!CHECK(p != NULL, "malloc(%zu)", n))
            continue;
        memset(p, 0xAB, n);
        free(p);
        sleep_ms(1200); /* past ten purge delays of 100 ms: the background pass purges */
        unsigned char *q = calloc(1, n);
        if (!CHECK(q != NULL, "calloc(%zu)", n))
            continue;
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += q[i] != 0;
        CHECK(bad == 0, "calloc(%zu) after a lazy purge: %zu bytes not zero", n, bad);
        free(q);
    }
    printf("idle-lazyzero: 4 sizes checked\n");
}

static volatile int g_stop;

static void *busy_thread(void *arg) {
    uint64_t s = (uint64_t)(uintptr_t)arg;
    void *slots[256] = {0};
    while (!g_stop) {
        unsigned i = (unsigned)(rng_next(&s) % 256);
        free(slots[i]);
        size_t n = rng_next(&s) % 8 == 0 ? pick_size(&s) : 8 + rng_next(&s) % 4096;
        slots[i] = malloc(n);
        if (slots[i])
            memset(slots[i], 1, n < 4096 ? n : 4096);
    }
    for (int i = 0; i < 256; i++)
        free(slots[i]);
    return NULL;
}

/* Four threads allocate and free (big blocks among them, so the purger has work) while the
 * main thread forks 40 children; each child allocates, frees and exits 0. */
static void fork_busy(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, busy_thread, (void *)(uintptr_t)(1234 + i));
    sleep_ms(200);
    int ok = 0;
    for (int k = 0; k < 40; k++) {
        pid_t pid = fork();
        if (pid == 0) {
            void *v[64];
            for (int i = 0; i < 64; i++)
                v[i] = malloc((size_t)(i + 1) * 1000);
            for (int i = 0; i < 64; i++)
                free(v[i]);
            void *big = malloc(16 << 20);
            memset(big, 1, 16 << 20);
            free(big);
            _exit(v[0] != NULL && big != NULL ? 0 : 1);
        }
        int st = 0;
        if (CHECK(pid > 0, "fork: %s", strerror(errno)) && waitpid(pid, &st, 0) == pid)
            ok += CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d status %#x", k, st);
        sleep_ms(20);
    }
    g_stop = 1;
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    printf("idle-forkbusy: %d of 40 children exited 0, purger %s\n", ok,
           purger_tid() ? "running" : "absent");
    if (!g_no_hakmem)
        CHECK(purger_tid() != 0, "no purger thread while 4 threads freed big blocks");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--no-hakmem") == 0)
            g_no_hakmem = 1;
    const char *mode = argc > 1 ? argv[1] : "burst";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(mode, "sleep") == 0) {
        long s = argc > 2 ? strtol(argv[2], NULL, 10) : 10;
        /* A burst of frees first (128 MiB: a single-threaded process starts the purger only
         * after one), so that the lazily started purger exists. */
        void *blocks[16];
        for (int i = 0; i < 16; i++) {
            blocks[i] = malloc(8 << 20);
            memset(blocks[i], 1, 8 << 20);
        }
        for (int i = 0; i < 16; i++)
            free(blocks[i]);
        sleep_ms(100);
        long tid = purger_tid();
        sleep_ms(3000); /* the purge itself: the pages go back */
        long runs0 = 0, runs = 0;
        long t0 = thread_cpu_us(tid, &runs0);
        sleep_ms(s * 1000);
        long t1 = thread_cpu_us(tid, &runs);
        printf("idle-sleep: slept %ld s, purger cpu %ld us and %ld wake-ups in the sleep (%ld us "
               "in all), rss %zu MiB\n",
               s, t1 - t0, runs - runs0, t1, rss_mib());
        if (!g_no_hakmem) {
            CHECK(t0 >= 0, "no hakmem-purge thread after 128 MiB were freed");
            CHECK(t1 - t0 <= 10000, "purger used %ld us of CPU in a %ld s sleep", t1 - t0, s);
        }
        return finish("idle");
    }
    if (strcmp(mode, "burst") == 0) {
        const char *tail = argc > 2 ? argv[2] : "calls";
        int nt = argc > 3 ? atoi(argv[3]) : 1;
        if (nt < 1 || nt > 16)
            nt = 1;
        start(nt, 0);
        size_t peak = peak_mib();
        if (strcmp(tail, "calls") == 0) {
            for (int i = 0; i < 300; i++) {
                free(opaque_ptr(malloc(opaque_size(64))));
                sleep_ms(10);
            }
        } else {
            sleep_ms(3000);
        }
        size_t after = rss_mib();
        printf("idle-burst: tail=%s threads=%d peak=%zu after=%zu MiB\n", tail, nt, peak, after);
        if (!g_no_hakmem)
            CHECK(after <= max_mib(48), "RSS %zu MiB 3 s after the frees (%s)", after, tail);
        join_all(nt, 0);
    } else if (strcmp(mode, "remote") == 0) {
        int nt = argc > 2 ? atoi(argv[2]) : 4;
        if (nt < 2 || nt > 16)
            nt = 4;
        g_small = argc > 3 && strcmp(argv[3], "small") == 0;
        start(nt, 1);
        size_t peak = peak_mib();
        size_t before = rss_mib();
        malloc_trim(0);
        size_t after = rss_mib();
        printf("idle-remote: threads=%d peak=%zu before-trim=%zu after-trim=%zu MiB\n", nt, peak,
               before, after);
        if (!g_no_hakmem)
            CHECK(after <= max_mib(64), "RSS %zu MiB after malloc_trim(0), owners idle", after);
        join_all(nt, 1);
    } else if (strcmp(mode, "lazyzero") == 0) {
        lazy_zero();
    } else if (strcmp(mode, "forkbusy") == 0) {
        fork_busy();
    } else {
        CHECK(0, "unknown mode %s", mode);
    }
    return finish("idle");
}
