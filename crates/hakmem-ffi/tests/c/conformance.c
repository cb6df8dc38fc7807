/* C/POSIX conformance of the malloc family exported by libhakmem.so.
 *
 * Run as `LD_PRELOAD=libhakmem.so ./conformance`. Every check prints a
 * `FAIL file:line: ...` line when it fails; the program ends with
 * `conformance: N checks, M failures` and exits non-zero if M > 0.
 *
 * `--no-hakmem` runs against plain glibc (to validate the program itself):
 * hakmem-only checks (hakmem_owns, hakmem_stats_format, symbol origin,
 * free_sized when glibc lacks it, and rules glibc 2.36 does not follow) are
 * skipped with a `SKIP` line. */
#define _GNU_SOURCE
#include "common.h"

#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* Not in glibc 2.36's headers; weak so the program links without them. */
extern void free_sized(void *p, size_t size) __attribute__((weak));
extern void free_aligned_sized(void *p, size_t alignment, size_t size) __attribute__((weak));

/* glibc-internal aliases; hakmem must export (interpose) them too. */
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static size_t g_page;

/* ---- wrappers: results go through opaque_ptr so the compiler cannot use
 * its knowledge of malloc (alignment, zeroed calloc memory, elision). ---- */
static void *x_malloc(size_t n) { return opaque_ptr(malloc(opaque_size(n))); }
static void *x_calloc(size_t a, size_t b) { return opaque_ptr(calloc(opaque_size(a), opaque_size(b))); }
static void *x_realloc(void *p, size_t n) { return opaque_ptr(realloc(opaque_ptr(p), opaque_size(n))); }
static void *x_reallocarray(void *p, size_t a, size_t b) {
    return opaque_ptr(reallocarray(opaque_ptr(p), opaque_size(a), opaque_size(b)));
}
static void *x_memalign(size_t a, size_t n) { return opaque_ptr(memalign(opaque_size(a), opaque_size(n))); }
static void *x_aligned_alloc(size_t a, size_t n) { return opaque_ptr(aligned_alloc(opaque_size(a), opaque_size(n))); }
static int x_posix_memalign(void **out, size_t a, size_t n) {
    int r = posix_memalign(out, opaque_size(a), opaque_size(n));
    *out = opaque_ptr(*out);
    return r;
}
static void *x_valloc(size_t n) { return opaque_ptr(valloc(opaque_size(n))); }
static void *x_pvalloc(size_t n) { return opaque_ptr(pvalloc(opaque_size(n))); }
static void x_free(void *p) { free(opaque_ptr(p)); }

static int aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static int is_zero(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static int have_free_sized(void) {
    if (free_sized && free_aligned_sized)
        return 1;
    if (g_no_hakmem) {
        static int said;
        if (!said++)
            printf("SKIP free_sized/free_aligned_sized absent (--no-hakmem)\n");
    } else {
        static int said;
        if (!said++)
            CHECK(0, "free_sized/free_aligned_sized not exported");
    }
    return 0;
}

/* A rule plain glibc 2.36 does not follow: enforced only under hakmem. */
static int hakmem_rule(const char *what) {
    if (!g_no_hakmem)
        return 1;
    printf("SKIP (glibc differs) %s\n", what);
    return 0;
}

/* Fill a block with a pattern, to be verified later. Large blocks get only
 * their first and last 256 KiB written, to keep the run fast. */
static void fill_block(void *p, size_t n, uintptr_t seed) {
    if (n <= 8 * MiB) {
        pat_fill(p, n, seed);
    } else {
        pat_fill(p, 256 * KiB, seed);
        pat_fill((char *)p + n - 256 * KiB, 256 * KiB, seed + 1);
    }
}
static int check_block(const void *p, size_t n, uintptr_t seed) {
    if (n <= 8 * MiB)
        return pat_check(p, n, seed) == (size_t)-1;
    return pat_check(p, 256 * KiB, seed) == (size_t)-1 &&
           pat_check((const char *)p + n - 256 * KiB, 256 * KiB, seed + 1) == (size_t)-1;
}

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------------ */

static void t_malloc_zero(void) {
    enum { N = 200 };
    void *ps[N];
    for (int i = 0; i < N; i++) {
        ps[i] = x_malloc(0);
        if (!CHECK(ps[i] != NULL, "malloc(0) #%d returned NULL", i))
            return;
        CHECK_OWNS(ps[i], "malloc(0) pointer %p not owned", ps[i]);
    }
    qsort(ps, N, sizeof ps[0], cmp_ptr);
    for (int i = 1; i < N; i++)
        CHECK(ps[i] != ps[i - 1], "malloc(0) returned %p twice while both live", ps[i]);
    for (int i = 0; i < N; i++)
        x_free(ps[i]);

    void *a = x_malloc(0), *b = x_malloc(1);
    CHECK(a && b && a != b, "malloc(0)=%p and malloc(1)=%p must be distinct non-NULL", a, b);
    x_free(a);
    x_free(b);
    printf("ok malloc(0)\n");
}

static void t_free_null_and_errno(void) {
    errno = EDOM;
    free(NULL);
    CHECK(errno == EDOM, "free(NULL) changed errno to %d", errno);

    static const size_t sizes[] = {1, 16, 100, 1024, 1025, 4096, 65536, MiB, MiB + 1, 2 * MiB, 8 * MiB, 64 * MiB};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        char *p = x_malloc(n);
        if (!CHECK(p != NULL, "malloc(%zu) returned NULL", n))
            continue;
        p[0] = 1;
        p[n - 1] = 2;
        errno = EDOM;
        x_free(p);
        CHECK(errno == EDOM, "free(malloc(%zu)) changed errno from EDOM to %d", n, errno);
    }
    /* Many frees, to reach slab/segment release paths. */
    enum { M = 20000 };
    static void *many[M];
    for (int i = 0; i < M; i++)
        many[i] = x_malloc(i % 7 == 0 ? 3000 + i % 5000 : 8 + i % 500);
    errno = ERANGE;
    for (int i = 0; i < M; i++)
        x_free(many[i]);
    CHECK(errno == ERANGE, "freeing %d blocks changed errno from ERANGE to %d", M, errno);

    if (have_free_sized()) {
        void *p = x_malloc(100);
        errno = EDOM;
        free_sized(p, 100);
        CHECK(errno == EDOM, "free_sized changed errno to %d", errno);
        p = x_aligned_alloc(4096, 3 * MiB);
        errno = EDOM;
        free_aligned_sized(p, 4096, 3 * MiB);
        CHECK(errno == EDOM, "free_aligned_sized changed errno to %d", errno);
        errno = EDOM;
        free_sized(NULL, 10);
        free_aligned_sized(NULL, 64, 10);
        CHECK(errno == EDOM, "free_sized(NULL)/free_aligned_sized(NULL) changed errno to %d", errno);
    }
    printf("ok free(NULL), errno preserved by free\n");
}

/* Every size 1..=4096 plus larger ones, all live at once: alignment,
 * usable size, and no two blocks overlap (each filled to its usable size
 * with its own pattern, then verified). */
static void t_alignment_and_usable(int use_calloc) {
    enum { N = 4096 + 64 };
    static void *ps[N];
    static size_t ns[N];
    int cnt = 0;
    for (size_t n = 1; n <= 4096; n++)
        ns[cnt++] = n;
    for (int i = 0; i < 64; i++)
        ns[cnt++] = 4097 + (size_t)i * 16411; /* up to ~1 MiB */
    for (int i = 0; i < cnt; i++) {
        size_t n = ns[i];
        ps[i] = use_calloc ? x_calloc(1, n) : x_malloc(n);
        if (!CHECK(ps[i] != NULL, "%s(%zu) returned NULL", use_calloc ? "calloc" : "malloc", n))
            return;
        size_t need = n >= 16 ? 16 : 8;
        CHECK(aligned(ps[i], need), "%s(%zu)=%p not %zu-aligned", use_calloc ? "calloc" : "malloc", n, ps[i], need);
        size_t u = malloc_usable_size(ps[i]);
        CHECK(u >= n, "malloc_usable_size(%s(%zu)) = %zu < %zu", use_calloc ? "calloc" : "malloc", n, u, n);
        if (use_calloc)
            CHECK(is_zero(ps[i], n), "calloc(1,%zu) memory not zero", n);
        ns[i] = u; /* fill the whole usable size */
        pat_fill(ps[i], u, (uintptr_t)ps[i]);
    }
    int bad = 0;
    for (int i = 0; i < cnt; i++) {
        size_t at = pat_check(ps[i], ns[i], (uintptr_t)ps[i]);
        if (at != (size_t)-1 && bad++ < 10)
            CHECK(0, "block %p (usable %zu) corrupted at byte %zu: blocks overlap", ps[i], ns[i], at);
    }
    CHECK(bad == 0, "%d of %d live blocks were corrupted by neighbours", bad, cnt);
    for (int i = 0; i < cnt; i++)
        x_free(ps[i]);
    printf("ok %s alignment/usable size/no overlap for sizes 1..4096 and up to 1 MiB\n", use_calloc ? "calloc" : "malloc");
}

static void t_usable_size(void) {
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu", malloc_usable_size(NULL));
    static const size_t sizes[] = {0, 1, 8, 9, 24, 1000, 1024, 1025, 2048, 4095, 4096, 4097, 100000, MiB - 1, MiB, MiB + 1, 2 * MiB + 5, 64 * MiB};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        void *p = x_malloc(n);
        if (!CHECK(p != NULL, "malloc(%zu) NULL", n))
            continue;
        size_t u = malloc_usable_size(p);
        CHECK(u >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, u);
        /* The whole usable size must be writable. */
        if (u <= 4 * MiB)
            memset(p, 0x5a, u);
        else
            ((char *)p)[u - 1] = 0x5a;
        x_free(p);
    }
    printf("ok malloc_usable_size\n");
}

static void t_huge(void) {
    static const size_t huge[] = {
        SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 15, SIZE_MAX - 4095, SIZE_MAX - MiB, SIZE_MAX / 2, SIZE_MAX / 2 + 1,
        (size_t)1 << 62, (size_t)PTRDIFF_MAX, (size_t)PTRDIFF_MAX + 1,
    };
    char *keep = x_malloc(100);
    if (!CHECK(keep != NULL, "malloc(100) NULL"))
        return;
    pat_fill(keep, 100, 77);
    for (size_t k = 0; k < sizeof huge / sizeof huge[0]; k++) {
        size_t n = huge[k];
        void *p;
#define EXPECT_ENOMEM(expr, name)                                                                             \
    do {                                                                                                      \
        errno = 0;                                                                                            \
        p = (expr);                                                                                           \
        int e = errno;                                                                                        \
        CHECK(p == NULL && e == ENOMEM, "%s(%#zx) = %p, errno %d (want NULL, ENOMEM)", name, n, p, e);         \
        if (p)                                                                                                \
            x_free(p);                                                                                        \
    } while (0)
        EXPECT_ENOMEM(x_malloc(n), "malloc");
        EXPECT_ENOMEM(x_calloc(1, n), "calloc(1, n)");
        EXPECT_ENOMEM(x_calloc(n, 1), "calloc(n, 1)");
        EXPECT_ENOMEM(x_realloc(NULL, n), "realloc(NULL, n)");
        EXPECT_ENOMEM(x_reallocarray(NULL, n, 1), "reallocarray(NULL, n, 1)");
        EXPECT_ENOMEM(x_memalign(64, n), "memalign(64, n)");
        EXPECT_ENOMEM(x_memalign(MiB, n), "memalign(1MiB, n)");
        EXPECT_ENOMEM(x_aligned_alloc(64, n), "aligned_alloc(64, n)");
        EXPECT_ENOMEM(x_aligned_alloc(MiB, n), "aligned_alloc(1MiB, n)");
        EXPECT_ENOMEM(x_valloc(n), "valloc");
        EXPECT_ENOMEM(x_pvalloc(n), "pvalloc");
        EXPECT_ENOMEM(opaque_ptr(__libc_malloc(opaque_size(n))), "__libc_malloc");
        EXPECT_ENOMEM(opaque_ptr(__libc_memalign(4096, opaque_size(n))), "__libc_memalign");

        void *q = (void *)1;
        int r = x_posix_memalign(&q, 64, n);
        CHECK(r == ENOMEM, "posix_memalign(64, %#zx) returned %d (want ENOMEM)", n, r);
        if (r == 0)
            x_free(q);
        r = x_posix_memalign(&q, MiB, n);
        CHECK(r == ENOMEM, "posix_memalign(1MiB, %#zx) returned %d (want ENOMEM)", n, r);
        if (r == 0)
            x_free(q);

        /* A failed realloc leaves the old block alone. */
        errno = 0;
        p = x_realloc(keep, n);
        int e = errno;
        CHECK(p == NULL && e == ENOMEM, "realloc(p, %#zx) = %p, errno %d (want NULL, ENOMEM)", n, p, e);
        if (p) {
            keep = p;
            continue;
        }
        CHECK(pat_check(keep, 100, 77) == (size_t)-1, "realloc(p, %#zx) failure damaged the old block", n);
    }
    x_free(keep);
    printf("ok huge sizes -> NULL + ENOMEM\n");
}

static void t_overflow(void) {
    static const size_t pairs[][2] = {
        {SIZE_MAX / 2 + 1, 2},                        /* product wraps to exactly 0 */
        {(size_t)1 << 32, (size_t)1 << 32},           /* wraps to 0 */
        {SIZE_MAX, SIZE_MAX},                         /* wraps to 1 */
        {3, SIZE_MAX / 3 + 1},                        /* wraps to 2 */
        {SIZE_MAX / 16 + 1, 16},                      /* wraps to 0 */
        {(size_t)1 << 33, ((size_t)1 << 31) + 1},     /* wraps to 2^33 */
        {65537, (SIZE_MAX / 65537) + 1},              /* wraps to small */
    };
    char *keep = x_malloc(64);
    if (!CHECK(keep != NULL, "malloc(64) NULL"))
        return;
    pat_fill(keep, 64, 99);
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        size_t a = pairs[k][0], b = pairs[k][1];
        for (int swap = 0; swap < 2; swap++) {
            size_t x = swap ? b : a, y = swap ? a : b;
            errno = 0;
            void *p = x_calloc(x, y);
            int e = errno;
            CHECK(p == NULL && e == ENOMEM, "calloc(%#zx, %#zx) = %p errno %d (want NULL, ENOMEM)", x, y, p, e);
            if (p)
                x_free(p);
            errno = 0;
            p = opaque_ptr(__libc_calloc(opaque_size(x), opaque_size(y)));
            e = errno;
            CHECK(p == NULL && e == ENOMEM, "__libc_calloc(%#zx, %#zx) = %p errno %d", x, y, p, e);
            if (p)
                x_free(p);
            errno = 0;
            p = x_reallocarray(NULL, x, y);
            e = errno;
            CHECK(p == NULL && e == ENOMEM, "reallocarray(NULL, %#zx, %#zx) = %p errno %d", x, y, p, e);
            if (p)
                x_free(p);
            errno = 0;
            p = x_reallocarray(keep, x, y);
            e = errno;
            CHECK(p == NULL && e == ENOMEM, "reallocarray(p, %#zx, %#zx) = %p errno %d", x, y, p, e);
            if (p) {
                keep = p;
                continue;
            }
            CHECK(pat_check(keep, 64, 99) == (size_t)-1, "failed reallocarray damaged the old block");
        }
    }
    x_free(keep);
    printf("ok calloc/reallocarray multiplication overflow -> NULL + ENOMEM\n");
}

static void t_bad_alignment(void) {
    static const size_t bad_pm[] = {0, 1, 2, 3, 4, 6, 12, 24, 40, 48, 96, 4095, 4097, MiB + 8, SIZE_MAX, SIZE_MAX - 7};
    for (size_t k = 0; k < sizeof bad_pm / sizeof bad_pm[0]; k++) {
        size_t a = bad_pm[k];
        void *p = NULL;
        errno = EDOM;
        int r = x_posix_memalign(&p, a, 64);
        int e = errno;
        CHECK(r == EINVAL, "posix_memalign(align=%#zx) returned %d (want EINVAL=%d)", a, r, EINVAL);
        CHECK(e == EDOM, "posix_memalign(align=%#zx) changed errno from EDOM to %d", a, e);
        if (r == 0)
            x_free(p);
    }
    /* Success returns 0 (not errno-style -1). */
    for (size_t a = sizeof(void *); a <= MiB; a *= 2) {
        void *p = NULL;
        int r = x_posix_memalign(&p, a, 1);
        CHECK(r == 0 && p != NULL && aligned(p, a), "posix_memalign(align=%zu, 1) = %d, %p", a, r, p);
        if (r == 0)
            x_free(p);
    }
    void *z = (void *)1;
    int r = x_posix_memalign(&z, 64, 0);
    CHECK(r == 0, "posix_memalign(64, 0) returned %d", r);
    if (r == 0 && z)
        x_free(z);

    if (hakmem_rule("aligned_alloc with a non-power-of-two alignment -> NULL + EINVAL")) {
        static const size_t bad_aa[] = {0, 3, 6, 12, 24, 48, 100, 4095, 4097, MiB + 1, SIZE_MAX};
        for (size_t k = 0; k < sizeof bad_aa / sizeof bad_aa[0]; k++) {
            size_t a = bad_aa[k];
            errno = 0;
            void *p = x_aligned_alloc(a, 64);
            int e = errno;
            CHECK(p == NULL && e == EINVAL, "aligned_alloc(%#zx, 64) = %p errno %d (want NULL, EINVAL)", a, p, e);
            if (p)
                x_free(p);
        }
    }
    printf("ok bad alignments -> EINVAL\n");
}

/* memalign / aligned_alloc / posix_memalign / __libc_memalign over all
 * power-of-two alignments up to 1 MiB and sizes 0..64 MiB. For each
 * (function, alignment) all sizes are live at once and verified. */
static void t_aligned_grid(void) {
    static const size_t sizes[] = {0, 1, 7, 8, 16, 24, 100, 1000, 1024, 1025, 4096, 4097, 32768,
                                   65536 + 8, MiB - 1, MiB, MiB + 1, 2 * MiB, 4 * MiB + 3, 64 * MiB};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    static const char *names[] = {"memalign", "aligned_alloc", "posix_memalign", "__libc_memalign"};
    int nblocks = 0;
    for (int f = 0; f < 4; f++) {
        for (size_t a = 1; a <= MiB; a *= 2) {
            if (f == 2 && a < sizeof(void *))
                continue;
            void *ps[NS];
            for (int k = 0; k < NS; k++) {
                size_t n = sizes[k];
                void *p = NULL;
                switch (f) {
                case 0: p = x_memalign(a, n); break;
                case 1: p = x_aligned_alloc(a, n); break;
                case 2: {
                    int r = x_posix_memalign(&p, a, n);
                    CHECK(r == 0, "posix_memalign(%zu, %zu) returned %d", a, n, r);
                    if (r)
                        p = NULL;
                    break;
                }
                case 3: p = opaque_ptr(__libc_memalign(opaque_size(a), opaque_size(n))); break;
                }
                ps[k] = p;
                if (!CHECK(p != NULL, "%s(%zu, %zu) returned NULL", names[f], a, n))
                    continue;
                nblocks++;
                CHECK(aligned(p, a), "%s(%zu, %zu) = %p is not %zu-aligned", names[f], a, n, p, a);
                size_t u = malloc_usable_size(p);
                CHECK(u >= n, "malloc_usable_size(%s(%zu, %zu)) = %zu", names[f], a, n, u);
                CHECK_OWNS(p, "%s(%zu, %zu) = %p not owned by hakmem", names[f], a, n, p);
                fill_block(p, n, (uintptr_t)p);
            }
            for (int k = 0; k < NS; k++) {
                if (!ps[k])
                    continue;
                CHECK(check_block(ps[k], sizes[k], (uintptr_t)ps[k]), "%s(%zu, %zu) = %p corrupted by a neighbour",
                      names[f], a, sizes[k], ps[k]);
                if (f == 1 && free_aligned_sized && (k & 1))
                    free_aligned_sized(ps[k], a, sizes[k]);
                else if (f == 3)
                    __libc_free(ps[k]);
                else
                    x_free(ps[k]);
            }
        }
    }
    printf("ok aligned allocation grid (%d blocks)\n", nblocks);
}

static void t_valloc_pvalloc(void) {
    size_t pg = g_page;
    const size_t sizes[] = {0, 1, 100, pg - 1, pg, pg + 1, 3 * pg + 7, MiB, MiB + 1, 3 * MiB + 5};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        char *p = x_valloc(n);
        if (CHECK(p != NULL, "valloc(%zu) NULL", n)) {
            CHECK(aligned(p, pg), "valloc(%zu) = %p not page aligned", n, p);
            CHECK(malloc_usable_size(p) >= n, "usable(valloc(%zu)) = %zu", n, malloc_usable_size(p));
            CHECK_OWNS(p, "valloc(%zu) not owned", n);
            if (n)
                memset(p, 1, n);
            x_free(p);
        }
        p = x_pvalloc(n);
        if (CHECK(p != NULL, "pvalloc(%zu) NULL", n)) {
            size_t rounded = (n + pg - 1) / pg * pg;
            size_t u = malloc_usable_size(p);
            CHECK(aligned(p, pg), "pvalloc(%zu) = %p not page aligned", n, p);
            CHECK(u >= rounded, "usable(pvalloc(%zu)) = %zu < %zu (rounded to page)", n, u, rounded);
            CHECK_OWNS(p, "pvalloc(%zu) not owned", n);
            memset(p, 1, rounded);
            x_free(p);
        }
    }
    printf("ok valloc/pvalloc\n");
}

static void t_calloc(void) {
    static const size_t sizes[] = {1, 8, 16, 32, 48, 64, 100, 256, 1000, 1024, 1025, 4096, 5000,
                                   32768, 65536, 300000, MiB, MiB + 1, 3 * MiB};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        int K = n <= 65536 ? 32 : 4;
        void *ps[32];
        for (int round = 0; round < 12; round++) {
            for (int i = 0; i < K; i++) {
                ps[i] = x_malloc(n);
                if (!CHECK(ps[i] != NULL, "malloc(%zu) NULL", n))
                    return;
                memset(ps[i], 0xAA, malloc_usable_size(ps[i]));
            }
            for (int i = 0; i < K; i++)
                x_free(ps[i]);
            for (int i = 0; i < K; i++) {
                switch ((round + i) % 3) {
                case 0: ps[i] = x_calloc(1, n); break;
                case 1: ps[i] = x_calloc(n, 1); break;
                default: ps[i] = (n % 8 == 0) ? x_calloc(n / 8, 8) : x_calloc(1, n); break;
                }
                if (!CHECK(ps[i] != NULL, "calloc(%zu) NULL", n))
                    return;
                CHECK(is_zero(ps[i], n), "calloc(%zu) after reuse (round %d, #%d) is not zero", n, round, i);
                CHECK_OWNS(ps[i], "calloc(%zu) not owned", n);
            }
            for (int i = 0; i < K; i++) {
                memset(ps[i], 0xAA, n); /* dirty for the next round */
                x_free(ps[i]);
            }
        }
    }
    /* A zero-sized calloc: NULL or a freeable pointer. */
    void *p = x_calloc(0, 16), *q = x_calloc(16, 0);
    x_free(p);
    x_free(q);
    /* Large calloc: fully zero. */
    char *big = x_calloc(64, MiB);
    if (CHECK(big != NULL, "calloc(64, 1MiB) NULL")) {
        CHECK(is_zero(big, 64 * MiB), "calloc(64, 1MiB) not zero");
        x_free(big);
    }
    printf("ok calloc zeroes (also after reuse)\n");
}

static void t_realloc(void) {
    static const size_t sizes[] = {1, 8, 16, 24, 100, 1024, 1025, 4096, 32768, MiB, MiB + 1, 2 * MiB, 8 * MiB};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    for (int i = 0; i < NS; i++) {
        for (int j = 0; j < NS; j++) {
            size_t a = sizes[i], b = sizes[j];
            char *p = x_malloc(a);
            if (!CHECK(p != NULL, "malloc(%zu) NULL", a))
                continue;
            uintptr_t seed = (uintptr_t)p;
            pat_fill(p, a, seed);
            char *q = x_realloc(p, b);
            if (!CHECK(q != NULL, "realloc(malloc(%zu), %zu) NULL", a, b)) {
                x_free(p);
                continue;
            }
            size_t keep = a < b ? a : b;
            size_t at = pat_check(q, keep, seed);
            CHECK(at == (size_t)-1, "realloc %zu -> %zu lost contents at byte %zu", a, b, at);
            CHECK(malloc_usable_size(q) >= b, "usable(realloc(.., %zu)) = %zu", b, malloc_usable_size(q));
            CHECK(aligned(q, b >= 16 ? 16 : 8), "realloc(.., %zu) = %p misaligned", b, q);
            CHECK_OWNS(q, "realloc %zu -> %zu result not owned", a, b);
            memset(q, 0x33, b);
            x_free(q);
        }
    }
    /* A growth chain 16 B -> 8 MiB and back, in steps. */
    size_t n = 16;
    char *p = x_malloc(n);
    uintptr_t seed = 12345;
    pat_fill(p, n, seed);
    while (n < 8 * MiB) {
        size_t m = n * 3 / 2 + 1;
        char *q = x_realloc(p, m);
        if (!CHECK(q != NULL, "realloc grow to %zu NULL", m))
            break;
        CHECK(pat_check(q, n, seed) == (size_t)-1, "grow %zu -> %zu lost contents", n, m);
        p = q;
        n = m;
        pat_fill(p, n, seed);
    }
    while (n > 8) {
        size_t m = n / 3;
        char *q = x_realloc(p, m);
        if (!CHECK(q != NULL, "realloc shrink to %zu NULL", m))
            break;
        CHECK(pat_check(q, m, seed) == (size_t)-1, "shrink %zu -> %zu lost contents", n, m);
        p = q;
        n = m;
    }
    x_free(p);

    /* realloc(NULL, n) == malloc(n). */
    static const size_t rn[] = {0, 1, 100, 5000, MiB, 3 * MiB};
    for (size_t k = 0; k < sizeof rn / sizeof rn[0]; k++) {
        char *q = x_realloc(NULL, rn[k]);
        if (CHECK(q != NULL, "realloc(NULL, %zu) NULL", rn[k])) {
            CHECK(malloc_usable_size(q) >= rn[k], "usable(realloc(NULL, %zu))", rn[k]);
            CHECK_OWNS(q, "realloc(NULL, %zu) not owned", rn[k]);
            if (rn[k])
                memset(q, 1, rn[k]);
            x_free(q);
        }
    }
    /* realloc(p, 0): frees p; returns NULL (glibc) or a unique pointer. */
    static const size_t r0[] = {1, 100, 5000, 3 * MiB};
    for (size_t k = 0; k < sizeof r0 / sizeof r0[0]; k++) {
        void *other = x_malloc(0);
        void *q = x_malloc(r0[k]);
        void *r = x_realloc(q, 0);
        if (r) {
            CHECK(r != other, "realloc(p, 0) returned a pointer that is live elsewhere");
            x_free(r);
        }
        x_free(other);
    }
    /* realloc of aligned blocks keeps contents. */
    for (size_t a = 16; a <= MiB; a *= 4) {
        char *q = x_memalign(a, 300);
        if (!CHECK(q != NULL, "memalign(%zu, 300) NULL", a))
            continue;
        pat_fill(q, 300, 5);
        char *r = x_realloc(q, 70000);
        if (CHECK(r != NULL, "realloc(memalign(%zu), 70000) NULL", a)) {
            CHECK(pat_check(r, 300, 5) == (size_t)-1, "realloc of memalign(%zu) block lost contents", a);
            x_free(r);
        } else {
            x_free(q);
        }
    }
    printf("ok realloc\n");
}

static void t_reallocarray(void) {
    int *p = x_reallocarray(NULL, 10, sizeof(int));
    if (!CHECK(p != NULL, "reallocarray(NULL, 10, 4) NULL"))
        return;
    for (int i = 0; i < 10; i++)
        p[i] = i * 7;
    int *q = x_reallocarray(p, 100000, sizeof(int));
    if (!CHECK(q != NULL, "reallocarray grow NULL")) {
        x_free(p);
        return;
    }
    for (int i = 0; i < 10; i++)
        CHECK(q[i] == i * 7, "reallocarray lost element %d", i);
    CHECK(malloc_usable_size(q) >= 100000 * sizeof(int), "usable after reallocarray");
    CHECK_OWNS(q, "reallocarray result not owned");
    q = x_reallocarray(q, 3, sizeof(int));
    if (CHECK(q != NULL, "reallocarray shrink NULL")) {
        for (int i = 0; i < 3; i++)
            CHECK(q[i] == i * 7, "reallocarray shrink lost element %d", i);
        x_free(q);
    }
    printf("ok reallocarray\n");
}

/* Allocate-and-free loops must not grow the footprint: proves that free,
 * free_sized, free_aligned_sized and __libc_free really release. */
typedef void (*free_fn)(void *p, size_t a, size_t n);
static void fr_free(void *p, size_t a, size_t n) { (void)a, (void)n, x_free(p); }
static void fr_libc_free(void *p, size_t a, size_t n) { (void)a, (void)n, __libc_free(p); }
static void fr_sized(void *p, size_t a, size_t n) { (void)a, free_sized(p, n); }
static void fr_aligned_sized(void *p, size_t a, size_t n) { free_aligned_sized(p, a, n); }

static void leak_loop(const char *fname, free_fn fr, int aligned_kind) {
    struct {
        size_t align, size;
        int iters;
    } cases[] = {{16, 32, 200000}, {64, 1000, 50000}, {4096, 65536, 3000}, {4096, 300000, 600}, {MiB, 3 * MiB, 300}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t a = cases[c].align, n = cases[c].size;
        unsigned long long carved0 = stat_now("tiny.carved"), mapped0 = stat_now("os.mapped");
        for (int i = 0; i < cases[c].iters; i++) {
            char *p = aligned_kind ? x_aligned_alloc(a, n) : x_malloc(n);
            if (!CHECK(p != NULL, "alloc(%zu) NULL", n))
                return;
            p[0] = (char)i;
            p[n - 1] = (char)i;
            fr(p, a, n);
        }
        unsigned long long carved1 = stat_now("tiny.carved"), mapped1 = stat_now("os.mapped");
        CHECK(carved1 - carved0 < (unsigned long long)cases[c].iters / 2,
              "%s: %d x (alloc %zu + %s) carved %llu fresh tiny blocks: freed blocks are not reused", fname,
              cases[c].iters, n, fname, carved1 - carved0);
        long long grew = (long long)(mapped1 - mapped0);
        CHECK(grew < (long long)(64 * MiB), "%s: %d x (alloc %zu + %s) grew os.mapped by %lld bytes: memory leaks",
              fname, cases[c].iters, n, fname, grew);
    }
}

static void t_free_sized(void) {
    if (!have_free_sized())
        return;
    static const size_t sizes[] = {0, 1, 8, 16, 100, 1024, 1025, 4096, 32768, MiB, MiB + 1, 2 * MiB, 64 * MiB};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        char *p = x_malloc(n);
        if (CHECK(p != NULL, "malloc(%zu) NULL", n)) {
            if (n)
                p[n - 1] = 1;
            free_sized(p, n);
        }
        p = x_calloc(1, n);
        if (CHECK(p != NULL, "calloc(%zu) NULL", n))
            free_sized(p, n);
        for (size_t a = 1; a <= MiB; a *= 8) {
            p = x_aligned_alloc(a, n);
            if (CHECK(p != NULL, "aligned_alloc(%zu, %zu) NULL", a, n)) {
                if (n)
                    p[n - 1] = 1;
                free_aligned_sized(p, a, n);
            }
        }
    }
    if (have_hakmem()) {
        leak_loop("free_sized", fr_sized, 0);
        leak_loop("free_aligned_sized", fr_aligned_sized, 1);
    }
    printf("ok free_sized/free_aligned_sized\n");
}

static void t_free_releases(void) {
    if (!have_hakmem())
        return;
    leak_loop("free", fr_free, 0);
    leak_loop("free(aligned_alloc)", fr_free, 1);
    leak_loop("__libc_free", fr_libc_free, 0);
    printf("ok free releases memory (no footprint growth in alloc/free loops)\n");
}

static void t_libc_aliases(void) {
    static const size_t sizes[] = {0, 1, 8, 1024, 1025, 32 * KiB, MiB, 2 * MiB, 64 * MiB};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        char *p = opaque_ptr(__libc_malloc(opaque_size(n)));
        if (CHECK(p != NULL, "__libc_malloc(%zu) NULL", n)) {
            CHECK(malloc_usable_size(p) >= n, "usable(__libc_malloc(%zu))", n);
            CHECK_OWNS(p, "__libc_malloc(%zu) = %p not owned by hakmem", n, p);
            fill_block(p, n, 1);
            char *q = opaque_ptr(__libc_realloc(p, opaque_size(n * 2 + 10)));
            if (CHECK(q != NULL, "__libc_realloc(%zu) NULL", n * 2 + 10)) {
                CHECK(n > 8 * MiB || pat_check(q, n, 1) == (size_t)-1, "__libc_realloc %zu lost contents", n);
                CHECK_OWNS(q, "__libc_realloc(.., %zu) not owned", n * 2 + 10);
                __libc_free(q);
            } else {
                __libc_free(p);
            }
        }
        p = opaque_ptr(__libc_calloc(1, opaque_size(n)));
        if (CHECK(p != NULL, "__libc_calloc(1, %zu) NULL", n)) {
            CHECK(is_zero(p, n), "__libc_calloc(1, %zu) not zero", n);
            CHECK_OWNS(p, "__libc_calloc(1, %zu) not owned", n);
            x_free(p); /* mixed: __libc_calloc + free */
        }
        p = opaque_ptr(__libc_memalign(4096, opaque_size(n)));
        if (CHECK(p != NULL, "__libc_memalign(4096, %zu) NULL", n)) {
            CHECK(aligned(p, 4096), "__libc_memalign(4096, %zu) = %p misaligned", n, p);
            CHECK_OWNS(p, "__libc_memalign(4096, %zu) not owned", n);
            __libc_free(p);
        }
        p = x_malloc(n); /* mixed: malloc + __libc_free */
        if (p)
            __libc_free(p);
    }
    /* realloc(NULL) and free(NULL) through the aliases */
    void *p = opaque_ptr(__libc_realloc(NULL, 10));
    CHECK(p != NULL, "__libc_realloc(NULL, 10) NULL");
    __libc_free(p);
    __libc_free(NULL);

    /* dlsym: every family symbol resolves, and (under hakmem) to libhakmem. */
    static const char *syms[] = {
        "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign", "aligned_alloc", "memalign",
        "valloc", "pvalloc", "malloc_usable_size", "free_sized", "free_aligned_sized", "__libc_malloc",
        "__libc_free", "__libc_calloc", "__libc_realloc", "__libc_memalign", "hakmem_stats_format", "hakmem_owns",
    };
    for (size_t k = 0; k < sizeof syms / sizeof syms[0]; k++) {
        void *f = dlsym(RTLD_DEFAULT, syms[k]);
        if (g_no_hakmem) {
            if (!f)
                printf("SKIP dlsym(%s) absent (--no-hakmem)\n", syms[k]);
            continue;
        }
        if (!CHECK(f != NULL, "dlsym(RTLD_DEFAULT, \"%s\") = NULL", syms[k]))
            continue;
        Dl_info info;
        if (CHECK(dladdr(f, &info) != 0 && info.dli_fname, "dladdr(%s) failed", syms[k]))
            CHECK(strstr(info.dli_fname, "hakmem") != NULL, "%s resolves to %s, not libhakmem", syms[k],
                  info.dli_fname);
    }
    void *(*dl_malloc)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_malloc");
    void (*dl_free)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "__libc_free");
    if (CHECK(dl_malloc && dl_free, "dlsym __libc_malloc/__libc_free")) {
        void *q = dl_malloc(48);
        CHECK(q != NULL, "dlsym'd __libc_malloc(48) NULL");
        CHECK_OWNS(q, "dlsym'd __libc_malloc pointer not owned");
        dl_free(q);
    }
    printf("ok __libc_* aliases and dlsym\n");
}

static int g_static_var = 42;
static const char g_static_str[] = "static";

static void t_owns(void) {
    if (!have_hakmem())
        return;
    static const size_t sizes[] = {0, 1, 8, 1024, 1025, 32 * KiB, MiB, 2 * MiB, 64 * MiB};
    static const char *fns[] = {"malloc",           "calloc",           "realloc(NULL)",   "realloc(grow)",
                                "reallocarray",     "posix_memalign16", "posix_memalign4k", "aligned_alloc64",
                                "memalign256",      "valloc",           "pvalloc",          "__libc_malloc",
                                "__libc_calloc",    "__libc_realloc",   "__libc_memalign64", "realloc(shrink)"};
    enum { NF = sizeof fns / sizeof fns[0] };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        for (int f = 0; f < NF; f++) {
            void *p = NULL;
            switch (f) {
            case 0: p = x_malloc(n); break;
            case 1: p = x_calloc(1, n); break;
            case 2: p = x_realloc(NULL, n); break;
            case 3: p = x_realloc(x_malloc(1), n); break;
            case 4: p = x_reallocarray(NULL, n, 1); break;
            case 5: if (x_posix_memalign(&p, 16, n)) p = NULL; break;
            case 6: if (x_posix_memalign(&p, 4096, n)) p = NULL; break;
            case 7: p = x_aligned_alloc(64, n); break;
            case 8: p = x_memalign(256, n); break;
            case 9: p = x_valloc(n); break;
            case 10: p = x_pvalloc(n); break;
            case 11: p = opaque_ptr(__libc_malloc(opaque_size(n))); break;
            case 12: p = opaque_ptr(__libc_calloc(opaque_size(n), 1)); break;
            case 13: p = opaque_ptr(__libc_realloc(NULL, opaque_size(n))); break;
            case 14: p = opaque_ptr(__libc_memalign(64, opaque_size(n))); break;
            case 15: p = x_realloc(x_malloc(n + 3 * MiB), n); break;
            }
            if (n == 0 && (f == 3 || f == 15) && p == NULL)
                continue; /* realloc(p, 0) may free and return NULL */
            if (!CHECK(p != NULL, "%s(%zu) NULL", fns[f], n))
                continue;
            CHECK(hakmem_owns(p) == 1, "hakmem_owns(%s(%zu) = %p) = %d", fns[f], n, p, hakmem_owns(p));
            if (n > 0) {
                char *last = (char *)p + n - 1;
                CHECK(hakmem_owns(last) == 1, "hakmem_owns(last byte of %s(%zu)) = %d", fns[f], n, hakmem_owns(last));
            }
            x_free(p);
        }
    }
    int stack_var = 1;
    CHECK(hakmem_owns(opaque_ptr(&stack_var)) == 0, "hakmem_owns(stack address) != 0");
    CHECK(hakmem_owns(opaque_ptr(&g_static_var)) == 0, "hakmem_owns(static variable) != 0");
    CHECK(hakmem_owns(opaque_ptr((void *)g_static_str)) == 0, "hakmem_owns(static string) != 0");
    CHECK(hakmem_owns(opaque_ptr((void *)(uintptr_t)&t_owns)) == 0, "hakmem_owns(code address) != 0");
    CHECK(hakmem_owns(NULL) == 0, "hakmem_owns(NULL) != 0");
    CHECK(hakmem_owns((void *)(uintptr_t)16) == 0, "hakmem_owns(0x10) != 0");
    CHECK(hakmem_owns((void *)(uintptr_t)0xffffffffffff0000ull) == 0, "hakmem_owns(kernel address) != 0");
    void *m = mmap(NULL, 4 * g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (CHECK(m != MAP_FAILED, "mmap failed")) {
        CHECK(hakmem_owns(m) == 0, "hakmem_owns(private mmap) != 0");
        CHECK(hakmem_owns((char *)m + 2 * g_page + 8) == 0, "hakmem_owns(inside private mmap) != 0");
        munmap(m, 4 * g_page);
    }
    printf("ok hakmem_owns\n");
}

static void t_stats_format(void) {
    if (!have_hakmem())
        return;
    char buf[2048];
    memset(buf, 'X', sizeof buf);
    size_t n = hakmem_stats_format(buf, sizeof buf);
    if (!CHECK(n > 0 && n < sizeof buf, "hakmem_stats_format returned %zu", n))
        return;
    CHECK(strlen(buf) == n, "returned length %zu but strlen %zu", n, strlen(buf));
    CHECK(strncmp(buf, "hakmem-stats: ", 14) == 0, "line does not start with 'hakmem-stats: ': %s", buf);
    CHECK(strchr(buf, '\n') == NULL, "line contains a newline: %s", buf);
    static const char *keys[] = {"tiny.carved", "tiny.slabs",  "tiny.remote",  "pool.carved",
                                 "pool.slabs",  "pool.remote", "run.allocs",   "run.frees",
                                 "large.allocs", "large.frees", "os.mapped",   "os.segments"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        unsigned long long v;
        CHECK(stats_get(buf, keys[k], &v), "key %s missing or not a number in: %s", keys[k], buf);
    }
    /* Every token is key=number. */
    char copy[2048];
    strcpy(copy, buf + 14);
    for (char *save, *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        char *end = NULL;
        if (CHECK(eq && eq > tok, "token '%s' is not key=value", tok)) {
            strtoull(eq + 1, &end, 10);
            CHECK(end && end != eq + 1 && *end == '\0', "token '%s' value is not a number", tok);
        }
    }
    /* Truncation never writes past cap and always NUL-terminates. */
    size_t caps[] = {0, 1, 2, 10, n, n + 1};
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        size_t cap = caps[k];
        char small[2048 + 16];
        memset(small, 'Z', sizeof small);
        hakmem_stats_format(small, cap);
        CHECK(small[cap] == 'Z', "hakmem_stats_format(cap=%zu) wrote past cap", cap);
        if (cap > 0) {
            CHECK(memchr(small, '\0', cap) != NULL, "hakmem_stats_format(cap=%zu) did not NUL-terminate", cap);
            CHECK(strncmp(small, buf, cap - 1) == 0 || cap > n, "cap=%zu prefix differs", cap);
        }
    }
    printf("ok hakmem_stats_format: %s\n", buf);
}

/* fork() while other threads allocate: the child must be able to allocate
 * (no allocator lock left held) and exit cleanly. */
static atomic_int g_stop;
static void *fork_churn(void *arg) {
    unsigned x = (unsigned)(uintptr_t)arg;
    void *slots[64] = {0};
    while (!atomic_load(&g_stop)) {
        x = x * 1103515245u + 12345u;
        int i = (x >> 8) % 64;
        x_free(slots[i]);
        size_t n = (x >> 16) % 7 == 0 ? 2000 + (x >> 12) % 200000 : 1 + (x >> 16) % 700;
        slots[i] = x_malloc(n);
        if (slots[i])
            memset(slots[i], 1, n);
    }
    for (int i = 0; i < 64; i++)
        x_free(slots[i]);
    return NULL;
}
static void *child_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 1000; i++)
        x_free(x_malloc(1 + i * 37 % 5000));
    return NULL;
}
static void t_fork(void) {
    pthread_t th[2];
    atomic_store(&g_stop, 0);
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, fork_churn, (void *)(uintptr_t)(i + 1));
    int bad = 0;
    for (int k = 0; k < 30; k++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(20); /* a deadlocked child dies of SIGALRM */
            void *ps[100];
            for (int i = 0; i < 100; i++) {
                size_t n = i % 10 == 0 ? 3 * MiB : (size_t)(1 + i * 97);
                ps[i] = x_malloc(n);
                if (!ps[i])
                    _exit(3);
                memset(ps[i], i, n);
            }
            for (int i = 0; i < 100; i++)
                x_free(ps[i]);
            pthread_t t;
            if (pthread_create(&t, NULL, child_thread, NULL) != 0)
                _exit(4);
            pthread_join(t, NULL);
            _exit(0);
        }
        if (!CHECK(pid > 0, "fork failed"))
            break;
        int st = 0;
        waitpid(pid, &st, 0);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) && bad++ < 5)
            CHECK(0, "forked child #%d failed: %s %d (SIGALRM=14 means it deadlocked)", k,
                  WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
    atomic_store(&g_stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    printf("ok fork while threads allocate\n");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-hakmem") == 0)
            g_no_hakmem = 1;
        else {
            fprintf(stderr, "usage: %s [--no-hakmem]\n", argv[0]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    g_page = (size_t)sysconf(_SC_PAGESIZE);
    have_hakmem();

    t_malloc_zero();
    t_free_null_and_errno();
    t_alignment_and_usable(0);
    t_alignment_and_usable(1);
    t_usable_size();
    t_huge();
    t_overflow();
    t_bad_alignment();
    t_aligned_grid();
    t_valloc_pvalloc();
    t_calloc();
    t_realloc();
    t_reallocarray();
    t_free_sized();
    t_free_releases();
    t_libc_aliases();
    t_owns();
    t_stats_format();
    t_fork();
    return finish("conformance");
}
