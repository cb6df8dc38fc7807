/* Edge cases of the C ABI, one per mode (argv[1]), run by tests/edge.rs:
 *   memalign0  size 0 with every alignment, through posix_memalign/memalign/aligned_alloc: a
 *              real block of hakmem's (owned, usable, writable, reallocable, freeable);
 *   errno      posix_memalign's errno as glibc leaves it: ENOMEM after a failure, untouched on
 *              success and on EINVAL;
 *   badfree SIZE ALIGN HOW
 *              a bad free of a block of SIZE bytes aligned to ALIGN (0: malloc): HOW is
 *              `double` (freed twice), `interior` (p + 16 and p + 4096 freed while p is live) or
 *              `freed` (p + 4096 freed after p was). Prints `bad p=<p> q=<pointer freed>` before
 *              the bad free; under HAKMEM_ON_ERROR=warn it goes on and checks that nothing was
 *              corrupted: p (if live) keeps its contents and the next 1000 blocks of that size
 *              are distinct (none handed out twice);
 *   oom        under an RLIMIT_AS of the current VmSize + 128 MiB: fills the address space with
 *              blocks of one size until malloc fails, frees them all, and then a block of
 *              another size must succeed at once (no malloc_trim): the memory hakmem held free
 *              is given back when the OS refuses;
 *   tight      under an RLIMIT_AS of the current VmSize + 6 MiB: a direct mapping and a page-run
 *              segment (4 MiB each, 4 MiB-aligned) still fit, one at a time (no transient
 *              over-reservation of twice the size). */
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>
#include "common.h"
#include <malloc.h>

static void *(*volatile v_memalign)(size_t, size_t) = memalign;
static void *(*volatile v_aligned_alloc)(size_t, size_t) = aligned_alloc;
static int (*volatile v_posix_memalign)(void **, size_t, size_t) = posix_memalign;

/* A size-0 block from `how` (0: posix_memalign, 1: memalign, 2: aligned_alloc). */
static void *zero_block(int how, size_t align) {
    void *p = NULL;
    if (how == 0) {
        int r = v_posix_memalign(&p, align, 0);
        CHECK(r == 0, "posix_memalign(%zu, 0) returned %d", align, r);
    } else if (how == 1) {
        p = v_memalign(align, 0);
    } else {
        p = v_aligned_alloc(align, 0);
    }
    return p;
}

static void t_memalign0(void) {
    static const char *names[] = {"posix_memalign", "memalign", "aligned_alloc"};
    void *keep[64];
    int nkeep = 0;
    for (int how = 0; how < 3; how++) {
        for (size_t align = 16; align <= (size_t)64 << 20; align *= 2) {
            for (int rep = 0; rep < 3; rep++) {
                /* Something of hakmem's mapped between the zero blocks, so that a pointer past
                 * the end of its own reservation would land inside another mapping. */
                if (nkeep < 64)
                    keep[nkeep++] = malloc(600 << 10);
                char *p = zero_block(how, align);
                if (!CHECK(p != NULL, "%s(%zu, 0) returned NULL", names[how], align))
                    continue;
                CHECK((uintptr_t)p % align == 0, "%s(%zu, 0) = %p misaligned", names[how], align, (void *)p);
                CHECK_OWNS(p, "%s(%zu, 0) = %p not owned", names[how], align, (void *)p);
                size_t u = malloc_usable_size(p);
                CHECK(u >= 1, "%s(%zu, 0) = %p: usable size %zu", names[how], align, (void *)p, u);
                if (u >= 1)
                    p[0] = 'z';
                char *q = realloc(p, 100);
                if (!CHECK(q != NULL, "realloc(%s(%zu, 0), 100) returned NULL", names[how], align)) {
                    free(p);
                    continue;
                }
                CHECK(u < 1 || q[0] == 'z', "realloc lost the byte");
                memset(q, 'q', 100);
                CHECK(malloc_usable_size(q) >= 100, "usable size after realloc %zu", malloc_usable_size(q));
                free(q);
                /* Freed without a trace: the next one is freed directly. */
                free(zero_block(how, align));
            }
        }
    }
    for (int i = 0; i < nkeep; i++)
        free(keep[i]);
    printf("ok memalign0\n");
}

static void t_errno(void) {
    void *p = (void *)1;
    errno = 4321;
    int r = v_posix_memalign(&p, 64, 100);
    CHECK(r == 0 && p != NULL, "posix_memalign(64, 100) = %d", r);
    CHECK(errno == 4321, "success changed errno to %d", errno);
    free(p);
    errno = 4321;
    r = v_posix_memalign(&p, (size_t)8 << 20, 10 << 20);
    CHECK(r == 0, "posix_memalign(8 MiB, 10 MiB) = %d", r);
    CHECK(errno == 4321, "success (large) changed errno to %d", errno);
    free(p);
    /* Impossible sizes (refused up front) and sizes the OS refuses (beyond the 47-bit address space). */
    size_t sizes[] = {SIZE_MAX / 2, SIZE_MAX - 4096, (size_t)1 << 47, (size_t)3 << 46};
    size_t aligns[] = {16, 64, 4096, 1 << 20, 8 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        for (size_t j = 0; j < sizeof aligns / sizeof *aligns; j++) {
            p = (void *)1;
            errno = 4321;
            r = v_posix_memalign(&p, aligns[j], sizes[i]);
            int e = errno;
            CHECK(r == ENOMEM, "posix_memalign(%zu, %zu) = %d", aligns[j], sizes[i], r);
            CHECK(e == ENOMEM, "posix_memalign(%zu, %zu) failed with errno %d (glibc: ENOMEM)", aligns[j],
                  sizes[i], e);
            CHECK(p == (void *)1, "a failed posix_memalign wrote *memptr");
        }
    }
    errno = 4321;
    r = v_posix_memalign(&p, 24, 100);
    CHECK(r == EINVAL && errno == 4321, "posix_memalign(24, 100) = %d, errno %d", r, errno);
    printf("ok errno\n");
}

static void *(*volatile v_malloc)(size_t) = malloc;
static void (*volatile v_free)(void *) = free;

static char *alloc_sa(size_t size, size_t align) {
    return align ? v_memalign(align, size) : v_malloc(size);
}

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void t_badfree(size_t size, size_t align, const char *how) {
    enum { N = 1000 };
    static char *blocks[N];
    char *keep = alloc_sa(size, align);
    char *p = alloc_sa(size, align);
    if (!CHECK(keep && p, "allocation of %zu failed", size))
        return;
    memset(p, 'p', size);
    int live = 1;
    if (strcmp(how, "double") == 0) {
        v_free(p);
        live = 0;
        printf("bad p=%p q=%p\n", (void *)p, (void *)p);
        v_free(p);
    } else if (strcmp(how, "interior") == 0) {
        printf("bad p=%p q=%p\n", (void *)p, (void *)(p + 16));
        v_free(p + 16);
        v_free(p + 4096);
    } else if (strcmp(how, "freed") == 0) {
        v_free(p);
        live = 0;
        printf("bad p=%p q=%p\n", (void *)p, (void *)(p + 4096));
        v_free(p + 4096);
    } else {
        CHECK(0, "unknown badfree kind %s", how);
        return;
    }
    /* Only with HAKMEM_ON_ERROR=warn from here on. */
    if (live) {
        size_t bad = size;
        for (size_t i = 0; i < size; i++)
            if (p[i] != 'p') {
                bad = i;
                break;
            }
        CHECK(bad == size, "the live block changed at byte %zu", bad);
        v_free(p);
    }
    for (int i = 0; i < N; i++) {
        blocks[i] = alloc_sa(size, align);
        if (!CHECK(blocks[i] != NULL, "allocation %d of %zu failed", i, size))
            return;
        if (size <= (1 << 20)) { /* touching a mapping would fault in huge pages */
            blocks[i][0] = 1;
            blocks[i][size - 1] = 2;
        }
    }
    qsort(blocks, N, sizeof *blocks, cmp_ptr);
    int dups = 0;
    for (int i = 1; i < N; i++)
        dups += blocks[i] == blocks[i - 1] || blocks[i] == keep;
    CHECK(dups == 0, "%d blocks handed out twice among %d after the bad free", dups, N);
    for (int i = 0; i < N; i++)
        v_free(blocks[i]);
    v_free(keep);
    printf("ok badfree\n");
}

static long vm_kb(const char *key) { /* no stdio: fopen allocates */
    static char buf[8192];
    int fd = open("/proc/self/status", O_RDONLY);
    ssize_t n = fd < 0 ? 0 : read(fd, buf, sizeof buf - 1);
    if (fd >= 0)
        close(fd);
    buf[n > 0 ? n : 0] = 0;
    char *p = strstr(buf, key);
    return p ? atol(p + strlen(key)) : -1;
}

/* Fills memory with blocks of `fill` bytes until malloc fails, frees them all, then asks for
 * `count` blocks of `want` bytes (all live at once). */
static void fill_free_retry(size_t fill, size_t want, size_t count) {
    void *head = NULL;
    size_t n = 0;
    for (;;) {
        void **p = v_malloc(fill);
        if (!p)
            break;
        p[0] = head;
        head = p;
        n++;
    }
    int e = errno;
    long vm = vm_kb("VmSize:") >> 10;
    CHECK(n > 0 && e == ENOMEM, "filling with %zu B: %zu blocks, errno %d", fill, n, e);
    while (head) {
        void **p = head;
        head = p[0];
        v_free(p);
    }
    size_t got = 0;
    for (; got < count; got++) {
        void **p = v_malloc(want);
        if (!p)
            break;
        p[0] = head;
        head = p;
    }
    CHECK(got == count, "after %zu blocks of %zu B (VmSize %ld MiB) were freed: %zu of %zu blocks of %zu B", n, fill,
          vm, got, count, want);
    printf("oom: %zu x %zu B (VmSize %ld MiB), freed, then %zu of %zu x %zu B\n", n, fill, vm, got, count, want);
    while (head) {
        void **p = head;
        head = p[0];
        v_free(p);
    }
}

static void t_oom(void) {
    long vm = vm_kb("VmSize:");
    if (!CHECK(vm > 0, "no VmSize in /proc/self/status"))
        return;
    struct rlimit rl;
    if (!CHECK(getrlimit(RLIMIT_AS, &rl) == 0, "getrlimit: %s", strerror(errno)))
        return;
    rl.rlim_cur = ((rlim_t)vm << 10) + ((rlim_t)128 << 20);
    if (!CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno)))
        return;
    fill_free_retry(64, 1 << 20, 1);        /* Tiny slabs, then a page run */
    fill_free_retry(64, 16 << 20, 1);       /* Tiny slabs, then a direct mapping */
    fill_free_retry(3 << 20, 64, 1 << 20);  /* cached mappings, then 64 MiB of Tiny blocks */
    fill_free_retry(200 << 10, 16 << 20, 2); /* page runs, then mappings */
    fill_free_retry(16 << 10, 16 << 20, 2); /* L2 slabs, then mappings */
    fill_free_retry(48 << 10, 600 << 10, 20); /* L2.5 slabs, then page runs */
    printf("ok oom\n");
}

static void t_tight(void) {
    printf("tight: start\n"); /* stdout's buffer allocated before the measure */
    /* A small block too: the background purger's thread, started by the first free below,
     * gets one from glibc (its TLS vector), which must not need a segment of its own. */
    free(opaque_ptr(malloc(64)));
    long vm = vm_kb("VmSize:");
    struct rlimit rl;
    if (!CHECK(vm > 0 && getrlimit(RLIMIT_AS, &rl) == 0, "VmSize %ld", vm))
        return;
    rl.rlim_cur = ((rlim_t)vm << 10) + ((rlim_t)6 << 20);
    if (!CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno)))
        return;
    size_t sizes[] = {2 << 20, 600 << 10, 3 << 20, 900 << 10};
    for (int i = 0; i < 4; i++) {
        char *p = v_malloc(sizes[i]);
        CHECK(p != NULL, "malloc(%zu) with 6 MiB of address space left: errno %d", sizes[i], errno);
        if (p)
            memset(p, 1, sizes[i]);
        v_free(p);
        malloc_trim(0); /* give the segment back for the next one */
    }
    printf("ok tight\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    if (argc == 3 && strcmp(argv[2], "--no-hakmem") == 0)
        g_no_hakmem = 1;
    have_hakmem();
    if (strcmp(mode, "memalign0") == 0)
        t_memalign0();
    else if (strcmp(mode, "errno") == 0)
        t_errno();
    else if (strcmp(mode, "oom") == 0)
        t_oom();
    else if (strcmp(mode, "tight") == 0)
        t_tight();
    else if (strcmp(mode, "badfree") == 0 && argc == 5)
        t_badfree(strtoull(argv[2], NULL, 0), strtoull(argv[3], NULL, 0), argv[4]);
    else {
        fprintf(stderr, "usage: %s memalign0|errno|oom|tight [--no-hakmem] | badfree SIZE ALIGN double|interior|freed\n",
                argv[0]);
        return 2;
    }
    return finish("edge");
}
