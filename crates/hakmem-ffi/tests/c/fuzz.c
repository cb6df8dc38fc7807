/* Randomised fuzzing of the malloc family against a shadow model (run
 * under LD_PRELOAD, or alone against the C library's allocator).
 *
 *   fuzz [--seed S] [--seconds T] [--ops N] [--threads N] [--skip-known]
 *        [--inject KIND]
 *
 * N threads (default 4) run random sequences of malloc, calloc, realloc,
 * reallocarray, free, posix_memalign, aligned_alloc, memalign, valloc and
 * malloc_usable_size (plus the overflow and bad-alignment error paths) on
 * sizes 0..8 MiB, mostly small, with alignments up to 8 MiB. About one
 * block in eight is handed to another thread through a mutex-protected
 * mailbox, which frees it, reallocs it or keeps it. The run stops after T
 * seconds (default 5) or N operations in all (default: no limit), whichever
 * comes first; each thread's random stream is derived from the seed S.
 *
 * The shadow model records every live block (address, size, alignment,
 * pattern seed) in a treap ordered by address, held in static storage so
 * that the model allocates nothing through the allocator under test. It
 * checks, after each allocation: the alignment asked for (16 for the plain
 * calls of 16 bytes or more), malloc_usable_size >= the size, zeroed memory
 * from calloc, the old contents kept by realloc up to min(old, new), and
 * that the new block overlaps no live block (nor the same block handed out
 * twice); before each free: the block's pattern is intact (all bytes up to
 * 64 KiB; above that the first and last KiB and 64 sampled words). One
 * block in eight is filled up to its usable size instead of its size, so an
 * over-reported usable size shows as an overlap.
 *
 * --skip-known steers clear of the known allocator bugs (see
 * skip_known_size0) so that a run can look for new ones.
 *
 * --inject dup|corrupt|calloc|realloc plants one fault of that kind in
 * thread 0 (the model records a block twice; a byte of a live block is
 * overwritten through the program's own pointer; a calloc block is dirtied
 * before its zero check; a realloc'd block before its preservation check):
 * the run must then fail, which shows that the checks fire.
 *
 * Any failure prints one `FAIL ...` line and exits with status 1 at once.
 * A clean run ends with
 *   `ok fuzz ops=<N> seed=<S> threads=<T> <op>=<count> ...`. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define MAX_THREADS 16
#define SLOTS 512       /* live blocks a thread holds at most */
#define MAILBOX 128     /* blocks waiting in a thread's mailbox at most */
#define BIG (64 * KiB)  /* above this, patterns are sampled */
#define EDGE 1024       /* sampled blocks: bytes checked at each end */
#define WORDS 64        /* sampled blocks: 8-byte words checked between */
#define USABLE_FILL_MAX MiB /* fill up to the usable size only this far past the size */

/* ---------------------------------------------------------------- failure */

static pthread_mutex_t g_print_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_seed;

__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...) {
    pthread_mutex_lock(&g_print_lock);
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    printf(" (seed=%llu)\n", (unsigned long long)g_seed);
    va_end(ap);
    fflush(stdout);
    _exit(1);
}

/* ------------------------------------------------------------------- rng */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct {
    uint64_t s[4];
} rng_t;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** */
static uint64_t rnd(rng_t *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void rng_init(rng_t *r, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

/* Uniform in [0, n) (n > 0; the slight modulo bias does not matter here). */
static uint64_t below(rng_t *r, uint64_t n) { return rnd(r) % n; }

/* Uniform in [lo, hi]. */
static uint64_t range(rng_t *r, uint64_t lo, uint64_t hi) { return lo + below(r, hi - lo + 1); }

/* Skewed size: mostly <= 1 KiB, some 1-64 KiB, some 64 KiB-1 MiB, a few up
 * to 8 MiB; sizes next to powers of two come up often. */
static size_t random_size(rng_t *r) {
    uint64_t k = below(r, 1000);
    if (k < 880) {
        uint64_t j = below(r, 10);
        if (j < 5)
            return (size_t)below(r, 129);
        if (j < 8)
            return (size_t)below(r, 1025);
        size_t p = (size_t)1 << below(r, 11); /* 1..1024 */
        return p + (size_t)below(r, 3) - 1;   /* p-1, p, p+1 */
    }
    if (k < 975) {
        if (below(r, 4) == 0) {
            size_t p = (size_t)1 << range(r, 10, 16);
            return p + (size_t)below(r, 33) - 16;
        }
        return (size_t)range(r, KiB + 1, 64 * KiB);
    }
    if (k < 997)
        return (size_t)range(r, 64 * KiB + 1, MiB);
    return (size_t)range(r, MiB + 1, 8 * MiB);
}

/* Power-of-two alignment in [lo, 8 MiB]: mostly up to 4 KiB, a few up to
 * 8 MiB. */
static size_t random_align(rng_t *r, size_t lo) {
    int lg_lo = __builtin_ctzll(lo);
    uint64_t k = below(r, 100);
    int lg;
    if (k < 85)
        lg = (int)range(r, lg_lo, 12);
    else if (k < 97)
        lg = (int)range(r, 13, 20);
    else
        lg = (int)range(r, 21, 23);
    if (lg < lg_lo)
        lg = lg_lo;
    return (size_t)1 << lg;
}

/* --------------------------------------------------------------- blocks */

enum kind {
    K_MALLOC, K_CALLOC, K_REALLOC, K_REALLOCARRAY, K_POSIX_MEMALIGN, K_ALIGNED_ALLOC, K_MEMALIGN,
    K_VALLOC, K_NKINDS
};
static const char *const KIND_NAME[K_NKINDS] = {
    "malloc", "calloc", "realloc", "reallocarray", "posix_memalign", "aligned_alloc", "memalign",
    "valloc"};

typedef struct {
    unsigned char *p; /* NULL: empty slot */
    size_t len;       /* the size asked for */
    size_t fill;      /* bytes carrying the pattern (len, or the usable size) */
    size_t align;     /* the alignment guaranteed */
    uint64_t seed;    /* pattern seed */
    int kind;         /* how it was allocated (enum kind) */
    int owner;        /* thread that allocated it */
} blk_t;

static inline unsigned char pat(uint64_t seed, size_t i) {
    return (unsigned char)(((unsigned)seed + (unsigned)i * 47u) ^ ((unsigned)(i >> 8) * 29u) ^
                           (unsigned)(seed >> 8));
}

/* The byte ranges that carry a block's pattern: range k of `fill` bytes,
 * as [*off, *off + *n); returns 0 once k is past the last range. */
static int check_range(size_t fill, uint64_t seed, int k, size_t *off, size_t *n) {
    if (fill <= BIG) {
        if (k > 0)
            return 0;
        *off = 0;
        *n = fill;
        return 1;
    }
    if (k == 0) {
        *off = 0;
        *n = EDGE;
        return 1;
    }
    if (k == 1) {
        *off = fill - EDGE;
        *n = EDGE;
        return 1;
    }
    if (k >= 2 + WORDS)
        return 0;
    size_t step = (fill - 2 * EDGE) / WORDS;
    uint64_t h = seed ^ ((uint64_t)k * 0x9E3779B97F4A7C15ull);
    h ^= h >> 29;
    *off = EDGE + (size_t)(k - 2) * step + (size_t)(h % (step - 8));
    *n = 8;
    return 1;
}

static void write_pattern(const blk_t *b) {
    size_t off, n;
    for (int k = 0; check_range(b->fill, b->seed, k, &off, &n); k++)
        for (size_t i = off; i < off + n; i++)
            b->p[i] = pat(b->seed, i);
}

/* Checks the pattern of `b` at block `p` (the block itself, or where
 * realloc moved it) below `limit`; fails naming `what`. */
static void check_pattern_at(const blk_t *b, const unsigned char *p, size_t limit,
                             const char *what) {
    size_t off, n;
    for (int k = 0; check_range(b->fill, b->seed, k, &off, &n); k++) {
        size_t end = off + n < limit ? off + n : limit;
        for (size_t i = off; i < end; i++)
            if (p[i] != pat(b->seed, i))
                fail("%s: %s block %p (size %zu, align %zu, filled %zu, from thread %d) now "
                     "at %p: byte %zu is 0x%02x, expected 0x%02x",
                     what, KIND_NAME[b->kind], (void *)b->p, b->len, b->align, b->fill, b->owner,
                     (void *)p, i, p[i], pat(b->seed, i));
    }
}

/* The alignment any block of `n` bytes from malloc/calloc/realloc must
 * have: the largest power of two <= n, capped at 16. */
static size_t natural_align(size_t n) {
    if (n >= 16)
        return 16;
    if (n >= 8)
        return 8;
    if (n >= 4)
        return 4;
    if (n >= 2)
        return 2;
    return 1;
}

/* ------------------------------------------------------------ the model */

/* A treap of the live blocks' byte ranges [lo, hi), ordered by lo, in a
 * static node pool; every access holds g_model_lock. */
#define MAX_NODES (MAX_THREADS * (SLOTS + MAILBOX) + 64)
typedef struct {
    uintptr_t lo, hi;
    uint32_t pri, l, r;
    int owner, kind;
    size_t len;
} node_t;

static node_t g_nodes[MAX_NODES + 1]; /* index 0: none */
static uint32_t g_free_nodes[MAX_NODES];
static uint32_t g_nfree;
static uint32_t g_root;
static long g_live;
static uint64_t g_pri_state = 12345;
static pthread_mutex_t g_model_lock = PTHREAD_MUTEX_INITIALIZER;

static void model_init(void) {
    for (uint32_t i = 0; i < MAX_NODES; i++)
        g_free_nodes[i] = MAX_NODES - i;
    g_nfree = MAX_NODES;
}

/* Splits t into the ranges with lo < key (*a) and the rest (*b). */
static void split(uint32_t t, uintptr_t key, uint32_t *a, uint32_t *b) {
    if (!t) {
        *a = *b = 0;
        return;
    }
    if (g_nodes[t].lo < key) {
        split(g_nodes[t].r, key, &g_nodes[t].r, b);
        *a = t;
    } else {
        split(g_nodes[t].l, key, a, &g_nodes[t].l);
        *b = t;
    }
}

static uint32_t merge(uint32_t a, uint32_t b) {
    if (!a || !b)
        return a ? a : b;
    if (g_nodes[a].pri > g_nodes[b].pri) {
        g_nodes[a].r = merge(g_nodes[a].r, b);
        return a;
    }
    g_nodes[b].l = merge(a, g_nodes[b].l);
    return b;
}

static uint32_t rightmost(uint32_t t) {
    while (t && g_nodes[t].r)
        t = g_nodes[t].r;
    return t;
}

static uint32_t leftmost(uint32_t t) {
    while (t && g_nodes[t].l)
        t = g_nodes[t].l;
    return t;
}

/* The extent a block occupies in the model: its pattern, at least 1 byte
 * (a block of size 0 must still be distinct from every live block). */
static uintptr_t extent(const blk_t *b) { return b->fill ? b->fill : 1; }

/* Records a new live block; fails if it overlaps a live one. `via` names
 * the call that returned it. */
static void model_insert(const blk_t *b, const char *via) {
    uintptr_t lo = (uintptr_t)b->p, hi = lo + extent(b);
    pthread_mutex_lock(&g_model_lock);
    uint32_t a, c;
    split(g_root, lo, &a, &c);
    uint32_t pred = rightmost(a), succ = leftmost(c);
    const node_t *clash = NULL;
    if (pred && g_nodes[pred].hi > lo)
        clash = &g_nodes[pred];
    else if (succ && g_nodes[succ].lo < hi)
        clash = &g_nodes[succ];
    if (clash) {
        node_t o = *clash;
        g_root = merge(a, c);
        pthread_mutex_unlock(&g_model_lock);
        fail("%s returned %p (size %zu, extent [%p, %p)) %s the live %s block [%p, %p) "
             "(size %zu, thread %d)",
             via, (void *)b->p, b->len, (void *)lo, (void *)hi,
             o.lo == lo ? "twice: it is also" : "overlapping", KIND_NAME[o.kind], (void *)o.lo,
             (void *)o.hi, o.len, o.owner);
    }
    if (!g_nfree) {
        pthread_mutex_unlock(&g_model_lock);
        fail("model node pool exhausted (%ld live)", g_live);
    }
    uint32_t n = g_free_nodes[--g_nfree];
    g_nodes[n] = (node_t){.lo = lo,
                          .hi = hi,
                          .pri = (uint32_t)splitmix(&g_pri_state),
                          .owner = b->owner,
                          .kind = b->kind,
                          .len = b->len};
    g_root = merge(merge(a, n), c);
    g_live++;
    pthread_mutex_unlock(&g_model_lock);
}

/* Forgets a block about to be freed (or realloc'd); before the call, so
 * that the address can be handed out again at once. */
static void model_remove(const blk_t *b) {
    uintptr_t lo = (uintptr_t)b->p;
    pthread_mutex_lock(&g_model_lock);
    uint32_t a, m, c;
    split(g_root, lo, &a, &m);
    split(m, lo + 1, &m, &c);
    if (!m || g_nodes[m].l || g_nodes[m].r || g_nodes[m].lo != lo) {
        pthread_mutex_unlock(&g_model_lock);
        fail("model: block %p (size %zu) is not recorded", (void *)b->p, b->len);
    }
    g_free_nodes[g_nfree++] = m;
    g_root = merge(a, c);
    g_live--;
    pthread_mutex_unlock(&g_model_lock);
}

/* ---------------------------------------------------------- the threads */

/* The counted operations: the calls, plus usable (malloc_usable_size
 * checks), give (blocks handed to another thread), xfree / xrealloc / xkeep
 * (blocks another thread handed over, freed, realloc'd or kept), check
 * (pattern checks of a live block) and errors (rounds of the error paths). */
enum op {
    OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_REALLOCARRAY, OP_FREE, OP_POSIX_MEMALIGN,
    OP_ALIGNED_ALLOC, OP_MEMALIGN, OP_VALLOC, OP_USABLE, OP_GIVE, OP_TAKEN_FREE,
    OP_TAKEN_REALLOC, OP_TAKEN_KEEP, OP_CHECK, OP_ERRORS, OP_NOPS
};
static const char *const OP_NAME[OP_NOPS] = {
    "malloc", "calloc", "realloc", "reallocarray", "free", "posix_memalign", "aligned_alloc",
    "memalign", "valloc", "usable", "give", "xfree", "xrealloc", "xkeep", "check", "errors"};

typedef struct {
    pthread_mutex_t lock;
    int n;
    blk_t q[MAILBOX];
} mailbox_t;

typedef struct {
    int id;
    rng_t r;
    long ops;
    long count[OP_NOPS];
    blk_t slot[SLOTS];
    mailbox_t box;
} thread_t;

static thread_t g_thr[MAX_THREADS];
static int g_nthreads = 4;
static double g_seconds = 5.0;
static long g_max_ops = -1; /* all threads together; -1: no limit */
static atomic_long g_ops_left;
static atomic_int g_stop;
static const char *g_inject;
static long g_inject_at = 2000; /* thread 0's operation at which to plant the fault */

/* --skip-known: steer clear of the known hakmem bugs, so that a run can
 * look for new ones. Currently one: a size-0 request aligned to 4 MiB (the
 * chunk size) or more returns the end of its own reservation, a pointer
 * that hakmem does not recognise (malloc_usable_size 0, free ignores it,
 * realloc fails with ENOMEM). Such requests ask for 1 byte instead. */
static int g_skip_known;

static int skip_known_size0(size_t align) { return g_skip_known && align >= 4 * MiB; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int injecting(thread_t *t, const char *kind) {
    /* only thread 0 reads or clears g_inject while the threads run */
    return t->id == 0 && g_inject && t->ops >= g_inject_at && strcmp(g_inject, kind) == 0 &&
           (g_inject = NULL, 1);
}

/* Hides a pointer's provenance from the compiler: the block is used up to
 * its usable size, which malloc_usable_size allows but the compiler's view
 * of the size asked for does not know. */
static unsigned char *launder(void *p) {
    __asm__ volatile("" : "+r"(p));
    return p;
}

/* Checks a block just returned by `via` and records it. */
static void admit(thread_t *t, blk_t *b, int zeroed, const char *via) {
    if ((uintptr_t)b->p % b->align)
        fail("%s(%zu) returned %p, not aligned to %zu", via, b->len, (void *)b->p, b->align);
    size_t usable = malloc_usable_size(b->p);
    if (usable < b->len)
        fail("%s(%zu) returned %p with malloc_usable_size %zu < %zu", via, b->len, (void *)b->p,
             usable, b->len);
    b->fill = b->len;
    if (usable > b->len && usable - b->len <= USABLE_FILL_MAX && below(&t->r, 8) == 0)
        b->fill = usable;
    if (zeroed) {
        if (b->len > 0 && injecting(t, "calloc"))
            b->p[0] = 0x5a;
        blk_t z = *b;
        z.fill = b->len;
        size_t off, n;
        for (int k = 0; check_range(z.fill, z.seed, k, &off, &n); k++)
            for (size_t i = off; i < off + n; i++)
                if (b->p[i])
                    fail("%s(%zu) returned %p: byte %zu is 0x%02x, not zero", via, b->len,
                         (void *)b->p, i, b->p[i]);
    }
    model_insert(b, via);
    if (injecting(t, "dup"))
        model_insert(b, "(injected duplicate)");
    write_pattern(b);
}

/* Verifies a block's pattern and frees it. */
static void release(thread_t *t, blk_t *b, const char *what) {
    if (b->fill > 0 && injecting(t, "corrupt"))
        b->p[b->fill - 1] ^= 0x01;
    check_pattern_at(b, b->p, b->fill, what);
    model_remove(b);
    free(b->p);
    b->p = NULL;
}

static void new_block(thread_t *t, blk_t *b, int op) {
    rng_t *r = &t->r;
    size_t n = random_size(r);
    *b = (blk_t){.len = n, .seed = rnd(r), .owner = t->id};
    int zeroed = 0;
    const char *via = OP_NAME[op];
    void *p = NULL;
    switch (op) {
    case OP_MALLOC:
        b->kind = K_MALLOC;
        b->align = natural_align(n);
        p = malloc(n);
        break;
    case OP_CALLOC: {
        /* count * size, with a count of 1 or a divisor of n */
        size_t cnt = 1, sz = n;
        if (n > 0 && below(r, 2)) {
            size_t d = (size_t)1 << below(r, 5);
            if (n % d == 0) {
                cnt = d;
                sz = n / d;
            }
        }
        b->kind = K_CALLOC;
        b->align = natural_align(n);
        p = calloc(cnt, sz);
        zeroed = 1;
        break;
    }
    case OP_POSIX_MEMALIGN: {
        b->kind = K_POSIX_MEMALIGN;
        b->align = random_align(r, sizeof(void *));
        if (n == 0 && skip_known_size0(b->align))
            n = b->len = 1;
        int rc = posix_memalign(&p, b->align, n);
        if (rc != 0)
            fail("posix_memalign(%zu, %zu) returned %d", b->align, n, rc);
        break;
    }
    case OP_ALIGNED_ALLOC:
        /* a size that is a multiple of the alignment (C11's condition) */
        b->kind = K_ALIGNED_ALLOC;
        b->align = random_align(r, 1);
        if (n == 0 && skip_known_size0(b->align))
            n = 1;
        n = (n + b->align - 1) & ~(b->align - 1);
        if (n > 8 * MiB)
            n = b->align;
        b->len = n;
        p = aligned_alloc(b->align, n);
        break;
    case OP_MEMALIGN:
        b->kind = K_MEMALIGN;
        b->align = random_align(r, 1);
        if (n == 0 && skip_known_size0(b->align))
            n = b->len = 1;
        p = memalign(b->align, n);
        break;
    case OP_VALLOC:
        b->kind = K_VALLOC;
        b->align = (size_t)sysconf(_SC_PAGESIZE);
        p = valloc(n);
        break;
    default:
        fail("internal: op %d is not an allocation", op);
    }
    if (!p) {
        if (n == 0) { /* NULL is a valid answer for size 0 */
            b->p = NULL;
            return;
        }
        fail("%s(%zu, align %zu) returned NULL (errno %d)", via, n, b->align, errno);
    }
    b->p = launder(p);
    admit(t, b, zeroed, via);
}

/* realloc or reallocarray of the live block b (moved out of the model
 * first: realloc may free it). */
static void resize(thread_t *t, blk_t *b, int op) {
    rng_t *r = &t->r;
    size_t n;
    uint64_t k = below(r, 10);
    if (k < 4) { /* near the old size: in-place growth or shrink */
        long d = (long)range(r, 0, 64) - 32;
        n = (long)b->len + d > 0 ? (size_t)((long)b->len + d) : 1;
    } else if (k < 6) {
        n = b->len * 2 + 1;
        if (n > 8 * MiB)
            n = b->len / 2 + 1;
    } else {
        n = random_size(r);
    }
    if (n == 0) /* realloc(p, 0) is implementation-defined; avoided */
        n = 1;
    check_pattern_at(b, b->p, b->fill, "before realloc");
    model_remove(b);
    void *q;
    const char *via = OP_NAME[op];
    if (op == OP_REALLOCARRAY) {
        size_t cnt = 1, sz = n;
        if (n % 8 == 0) {
            cnt = 8;
            sz = n / 8;
        }
        q = reallocarray(b->p, cnt, sz);
    } else {
        q = realloc(b->p, n);
    }
    if (!q)
        fail("%s(%p, %zu) returned NULL (errno %d); the block: %s, size %zu, align %zu, "
             "from thread %d",
             via, (void *)b->p, n, errno, KIND_NAME[b->kind], b->len, b->align, b->owner);
    unsigned char *p = launder(q);
    size_t keep = b->len < n ? b->len : n;
    if (keep > 0 && injecting(t, "realloc"))
        p[0] ^= 0x80;
    check_pattern_at(b, p, keep, via);
    blk_t nb = {.p = p,
                .len = n,
                .align = natural_align(n),
                .seed = b->seed,
                .kind = op == OP_REALLOCARRAY ? K_REALLOCARRAY : K_REALLOC,
                .owner = t->id};
    admit(t, &nb, 0, via);
    *b = nb;
}

/* The error paths: overflowing calloc and reallocarray, bad alignments. */
static void error_paths(thread_t *t) {
    volatile size_t huge = SIZE_MAX / 2 + 1, two = 2;
    errno = 0;
    void *p = calloc(huge, two);
    if (p || errno != ENOMEM)
        fail("calloc(%zu, %zu) returned %p, errno %d (want NULL, ENOMEM)", (size_t)huge,
             (size_t)two, p, errno);
    errno = 0;
    p = reallocarray(NULL, huge, two);
    if (p || errno != ENOMEM)
        fail("reallocarray(NULL, %zu, %zu) returned %p, errno %d (want NULL, ENOMEM)",
             (size_t)huge, (size_t)two, p, errno);
    void *q = NULL;
    volatile size_t bad = sizeof(void *) * 3;
    int rc = posix_memalign(&q, bad, 16);
    if (rc != EINVAL)
        fail("posix_memalign(&q, %zu, 16) returned %d (want EINVAL)", (size_t)bad, rc);
    bad = sizeof(void *) / 2;
    rc = posix_memalign(&q, bad, 16);
    if (rc != EINVAL)
        fail("posix_memalign(&q, %zu, 16) returned %d (want EINVAL)", (size_t)bad, rc);
    if (malloc_usable_size(NULL) != 0)
        fail("malloc_usable_size(NULL) = %zu", malloc_usable_size(NULL));
    free(NULL);
    /* reallocarray overflow on a live block: NULL, and the block untouched */
    for (int i = 0; i < 4; i++) {
        blk_t *b = &t->slot[below(&t->r, SLOTS)];
        if (!b->p)
            continue;
        errno = 0;
        p = reallocarray(b->p, huge, two);
        if (p || errno != ENOMEM)
            fail("reallocarray(%p, %zu, %zu) returned %p, errno %d (want NULL, ENOMEM)",
                 (void *)b->p, (size_t)huge, (size_t)two, p, errno);
        check_pattern_at(b, b->p, b->fill, "after a failed reallocarray");
        break;
    }
}

/* Hands b to another thread's mailbox; 0 if there is none or it is full. */
static int give(thread_t *t, blk_t *b) {
    if (g_nthreads < 2)
        return 0;
    int to = (int)((t->id + 1 + (int)below(&t->r, g_nthreads - 1)) % g_nthreads);
    mailbox_t *m = &g_thr[to].box;
    pthread_mutex_lock(&m->lock);
    int ok = m->n < MAILBOX;
    if (ok)
        m->q[m->n++] = *b;
    pthread_mutex_unlock(&m->lock);
    if (ok)
        b->p = NULL;
    return ok;
}

/* Takes one block from t's mailbox into *b; 0 if it is empty. */
static int take(thread_t *t, blk_t *b) {
    mailbox_t *m = &t->box;
    pthread_mutex_lock(&m->lock);
    int ok = m->n > 0;
    if (ok) {
        int i = (int)below(&t->r, m->n);
        *b = m->q[i];
        m->q[i] = m->q[--m->n];
    }
    pthread_mutex_unlock(&m->lock);
    return ok;
}

/* One random operation. */
static void step(thread_t *t) {
    rng_t *r = &t->r;
    blk_t *b = &t->slot[below(r, SLOTS)];
    uint64_t k = below(r, 1000);
    int op;
    if (b->p == NULL) {
        /* an empty slot: allocate into it (or serve the mailbox) */
        if (k < 100) {
            blk_t in;
            if (take(t, &in)) {
                uint64_t w = below(r, 3);
                if (w == 0) {
                    release(t, &in, "before a cross-thread free");
                    t->count[OP_TAKEN_FREE]++;
                } else if (w == 1) {
                    resize(t, &in, OP_REALLOC);
                    *b = in;
                    t->count[OP_TAKEN_REALLOC]++;
                } else {
                    *b = in;
                    t->count[OP_TAKEN_KEEP]++;
                }
                return;
            }
        }
        if (k < 450)
            op = OP_MALLOC;
        else if (k < 600)
            op = OP_CALLOC;
        else if (k < 700)
            op = OP_POSIX_MEMALIGN;
        else if (k < 800)
            op = OP_ALIGNED_ALLOC;
        else if (k < 900)
            op = OP_MEMALIGN;
        else if (k < 920)
            op = OP_VALLOC;
        else if (k < 922) {
            error_paths(t);
            t->count[OP_ERRORS]++;
            return;
        } else
            op = OP_MALLOC;
        new_block(t, b, op);
        t->count[op]++;
        return;
    }
    if (k < 450) {
        release(t, b, "before free");
        t->count[OP_FREE]++;
    } else if (k < 600) {
        resize(t, b, OP_REALLOC);
        t->count[OP_REALLOC]++;
    } else if (k < 650) {
        resize(t, b, OP_REALLOCARRAY);
        t->count[OP_REALLOCARRAY]++;
    } else if (k < 800) {
        size_t u = malloc_usable_size(b->p);
        if (u < b->len || u < b->fill)
            fail("malloc_usable_size(%p) = %zu, below the size %zu (filled %zu) of that %s "
                 "block",
                 (void *)b->p, u, b->len, b->fill, KIND_NAME[b->kind]);
        t->count[OP_USABLE]++;
    } else if (k < 900) {
        if (give(t, b))
            t->count[OP_GIVE]++;
    } else {
        /* spot check without freeing */
        check_pattern_at(b, b->p, b->fill, "spot check");
        t->count[OP_CHECK]++;
    }
}

static void *thread_main(void *arg) {
    thread_t *t = arg;
    double deadline = now() + g_seconds;
    for (;;) {
        if ((t->ops & 255) == 0 && (atomic_load(&g_stop) || now() >= deadline)) {
            atomic_store(&g_stop, 1);
            break;
        }
        if (g_max_ops >= 0 && atomic_fetch_sub(&g_ops_left, 1) <= 0) {
            atomic_store(&g_stop, 1);
            break;
        }
        step(t);
        t->ops++;
    }
    /* free what is left (what others handed over is drained after the join) */
    for (int i = 0; i < SLOTS; i++)
        if (t->slot[i].p)
            release(t, &t->slot[i], "before the final free");
    return NULL;
}

static uint64_t parse_u64(const char *s, const char *what) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end || end == s) {
        fprintf(stderr, "fuzz: bad %s `%s`\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    g_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    int seconds_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--skip-known")) {
            g_skip_known = 1;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "fuzz: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--seed"))
            g_seed = parse_u64(v, "seed");
        else if (!strcmp(a, "--seconds"))
            g_seconds = strtod(v, NULL), seconds_given = 1;
        else if (!strcmp(a, "--ops"))
            g_max_ops = (long)parse_u64(v, "op count");
        else if (!strcmp(a, "--threads"))
            g_nthreads = (int)parse_u64(v, "thread count");
        else if (!strcmp(a, "--inject"))
            g_inject = v;
        else {
            fprintf(stderr,
                    "usage: fuzz [--seed S] [--seconds T] [--ops N] [--threads N] "
                    "[--skip-known] [--inject dup|corrupt|calloc|realloc]\n");
            return 2;
        }
        i++;
    }
    if (g_nthreads < 1 || g_nthreads > MAX_THREADS) {
        fprintf(stderr, "fuzz: --threads must be 1..%d\n", MAX_THREADS);
        return 2;
    }
    if (g_inject && strcmp(g_inject, "dup") && strcmp(g_inject, "corrupt") &&
        strcmp(g_inject, "calloc") && strcmp(g_inject, "realloc")) {
        fprintf(stderr, "fuzz: unknown --inject kind `%s`\n", g_inject);
        return 2;
    }
    if (g_max_ops >= 0 && !seconds_given)
        g_seconds = 1e9;
    atomic_store(&g_ops_left, g_max_ops);
    model_init();
    printf("fuzz: seed=%llu threads=%d seconds=%g ops=%ld%s%s%s\n", (unsigned long long)g_seed,
           g_nthreads, g_seconds, g_max_ops, g_skip_known ? " skip-known" : "",
           g_inject ? " inject=" : "", g_inject ? g_inject : "");
    fflush(stdout);

    pthread_t th[MAX_THREADS];
    for (int i = 0; i < g_nthreads; i++) {
        thread_t *t = &g_thr[i];
        t->id = i;
        uint64_t s = g_seed + 0x1000193ull * (uint64_t)(i + 1);
        rng_init(&t->r, s);
        pthread_mutex_init(&t->box.lock, NULL);
    }
    for (int i = 0; i < g_nthreads; i++)
        if (pthread_create(&th[i], NULL, thread_main, &g_thr[i]) != 0)
            fail("pthread_create failed");
    for (int i = 0; i < g_nthreads; i++)
        pthread_join(th[i], NULL);

    /* the blocks still in mailboxes: freed here, by a thread that did not
     * allocate them */
    thread_t *main_t = &g_thr[0];
    long total = 0, count[OP_NOPS] = {0};
    for (int i = 0; i < g_nthreads; i++) {
        blk_t in;
        while (take(&g_thr[i], &in)) {
            release(main_t, &in, "before the final cross-thread free");
            g_thr[i].count[OP_TAKEN_FREE]++;
        }
        total += g_thr[i].ops;
        for (int o = 0; o < OP_NOPS; o++)
            count[o] += g_thr[i].count[o];
    }
    if (g_live != 0 || g_root != 0)
        fail("model: %ld blocks still recorded after every block was freed", g_live);
    if (g_inject)
        fail("--inject %s: the fault was never planted (too few operations)", g_inject);
    printf("ok fuzz ops=%ld seed=%llu threads=%d", total, (unsigned long long)g_seed,
           g_nthreads);
    for (int o = 0; o < OP_NOPS; o++)
        printf(" %s=%ld", OP_NAME[o], count[o]);
    printf("\n");
    return 0;
}
