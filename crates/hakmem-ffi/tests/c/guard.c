/* Guard-page blocks (hakmem_guarded_malloc), one mode per process: `guard MODE`.
 *
 *   ok        allocate, fill, check, realloc and free guarded blocks: placement (16-byte
 *             aligned, ending at a page end), usable size, zero fill, contents across
 *             realloc, all 256 slots live at once (the 257th is refused), then 300
 *             allocate/free rounds that must all be served from quarantined slots.
 *             Prints the usual `guard: N checks, 0 failures` line.
 *   overflow  writes one byte past a 100-byte block's usable size
 *   uaf       frees a 100-byte block, then writes 10 bytes into it
 *   double    frees a block twice
 *   interior  frees a block's address + 16
 *   foreign   writes through a null pointer after a guarded block exists (the handler is
 *             installed): not hakmem's fault, the process must die by SIGSEGV, unreported
 *   raise     raise(SIGSEGV) likewise
 *   chain     installs its own SIGSEGV handler first, then as `foreign`: that handler must
 *             run (it prints `own handler` and exits 3)
 *
 * The faulting modes print `expect: <the report line hakmem must print>` first, and
 * `survived` if the misuse went unnoticed (then exit 1); `double` and `interior` print
 * `ok MODE` when hakmem returns (HAKMEM_ON_ERROR=warn). */
#include "common.h"
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

extern void *hakmem_guarded_malloc(size_t size) __attribute__((weak));

static void (*volatile vfree)(void *) = free;

#define PAGE 4096u
#define SLOTS 256

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

static char *guarded(size_t size) {
    /* Sampling (HAKMEM_GUARD_SAMPLE=1 or HAKMEM_SECURE=1): plain malloc is guarded. */
    if (getenv("GUARD_VIA_MALLOC")) return malloc(opaque_size(size));
    if (!hakmem_guarded_malloc) {
        printf("hakmem_guarded_malloc not found: is libhakmem.so preloaded?\n");
        fflush(stdout);
        exit(2);
    }
    return hakmem_guarded_malloc(opaque_size(size));
}

static void check_block(char *p, size_t size) {
    uintptr_t a = (uintptr_t)p;
    size_t usable = round16(size);
    CHECK(a % 16 == 0, "guarded(%zu) = %p is not 16-byte aligned", size, (void *)p);
    CHECK((a + usable) % PAGE == 0, "guarded(%zu) = %p does not end at a page end", size, (void *)p);
    CHECK(malloc_usable_size(p) == usable, "malloc_usable_size(guarded(%zu)) = %zu, want %zu", size,
          malloc_usable_size(p), usable);
    CHECK_OWNS(p, "guarded(%zu) = %p is not hakmem's", size, (void *)p);
    int zero = 1;
    for (size_t i = 0; i < usable; i++) zero &= p[i] == 0;
    CHECK(zero, "guarded(%zu) = %p is not zero-filled", size, (void *)p);
}

static int mode_ok(void) {
    static const size_t sizes[] = {1, 8, 15, 16, 17, 100, 256, 1000, 2048, 4000, 4080};
    const size_t nsizes = sizeof sizes / sizeof *sizes;
    unsigned long long before = stat_now("guarded");
    unsigned long long made = 0;

    /* Placement, usable size, zero fill, contents; each size three times over. */
    for (int round = 0; round < 3; round++)
        for (size_t k = 0; k < nsizes; k++) {
            size_t size = sizes[k];
            char *p = guarded(size);
            if (!CHECK(p != NULL, "guarded(%zu) failed", size)) continue;
            made++;
            check_block(p, size);
            pat_fill(p, round16(size), (uintptr_t)p);
            CHECK(pat_check(p, round16(size), (uintptr_t)p) == (size_t)-1, "contents of %p", (void *)p);
            free(p);
        }

    errno = 0;
    CHECK(guarded(0) == NULL && errno == ENOMEM, "guarded(0) not refused with ENOMEM");
    errno = 0;
    CHECK(guarded(4081) == NULL && errno == ENOMEM, "guarded(4081) not refused with ENOMEM");

    /* realloc: in place while it fits, else out of the guard pages with the contents. */
    char *p = guarded(100);
    if (CHECK(p != NULL, "guarded(100) failed")) {
        made++;
        pat_fill(p, 100, 7);
        char *q = realloc(p, 90);
        CHECK(q == p, "realloc(guarded 100, 90) moved the block");
        CHECK(pat_check(q, 90, 7) == (size_t)-1, "contents lost by realloc(90)");
        char *r = realloc(q, 10000);
        CHECK(r != NULL && r != q, "realloc(guarded, 10000) = %p", (void *)r);
        if (r) {
            CHECK(pat_check(r, 90, 7) == (size_t)-1, "contents lost by realloc(10000)");
            CHECK(malloc_usable_size(r) >= 10000, "usable %zu after realloc", malloc_usable_size(r));
            free(r);
        }
    }
    p = guarded(2000);
    if (CHECK(p != NULL, "guarded(2000) failed")) {
        made++;
        pat_fill(p, 2000, 9);
        char *q = realloc(p, 20);
        CHECK(q != NULL && q != p, "realloc(guarded 2000, 20) did not move");
        if (q) {
            CHECK(pat_check(q, 20, 9) == (size_t)-1, "contents lost by realloc(20)");
            free(q);
        }
    }

    /* Every slot live at once: exactly 256, all distinct pages; the next is refused. */
    static char *live[SLOTS + 1];
    int n = 0;
    while (n <= SLOTS && (live[n] = guarded(64)) != NULL) {
        memset(live[n], n & 0xff, 64);
        n++;
    }
    made += n;
    CHECK(n == SLOTS, "%d guarded blocks live at once, want %d", n, SLOTS);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (((uintptr_t)live[i] / PAGE) == ((uintptr_t)live[j] / PAGE)) {
                CHECK(0, "blocks %d and %d share a page", i, j);
                i = j = n;
            }
    int intact = 1;
    for (int i = 0; i < n; i++)
        for (int b = 0; b < 64; b++) intact &= (unsigned char)live[i][b] == (i & 0xff);
    CHECK(intact, "a live guarded block lost its contents");
    for (int i = 0; i < n; i++) free(live[i]);

    /* 300 rounds, all served from the quarantine (no slot is fresh any more). */
    int served = 0;
    for (int i = 0; i < 300; i++) {
        char *b = guarded(1 + (size_t)i * 13 % 4080);
        if (!b) break;
        served++;
        b[0] = 1;
        free(b);
    }
    made += served;
    CHECK(served == 300, "only %d of 300 allocations from quarantined slots", served);

    free(NULL);
    unsigned long long after = stat_now("guarded");
    CHECK(after - before == made, "guarded= grew by %llu, want %llu", after - before, made);
    return finish("guard");
}

static void own_handler(int sig) {
    (void)sig;
    static const char msg[] = "own handler\n";
    ssize_t w = write(1, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "ok";
    if (!strcmp(mode, "ok")) return mode_ok();
    if (!strcmp(mode, "chain")) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = own_handler;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, NULL);
    }
    char *p = guarded(100);
    if (!p) {
        printf("guarded(100) failed\n");
        return 2;
    }
    volatile char *v = p;
    if (!strcmp(mode, "overflow")) {
        size_t usable = malloc_usable_size(p);
        printf("expect: hakmem: heap-buffer-overflow: %p is %zu bytes past the 100-byte block %p\n",
               (void *)(p + usable), usable - 100, (void *)p);
        fflush(stdout);
        v[usable] = 1;
    } else if (!strcmp(mode, "uaf")) {
        printf("expect: hakmem: use after free: %p is 10 bytes into the freed 100-byte block %p\n",
               (void *)(p + 10), (void *)p);
        fflush(stdout);
        vfree(p);
        v[10] = 1;
    } else if (!strcmp(mode, "foreign") || !strcmp(mode, "chain")) {
        fflush(stdout);
        *(volatile char *)opaque_ptr(NULL) = 1;
    } else if (!strcmp(mode, "raise")) {
        fflush(stdout);
        raise(SIGSEGV);
    } else if (!strcmp(mode, "double")) {
        vfree(p);
        vfree(p);
        printf("ok double\n");
        return 0;
    } else if (!strcmp(mode, "interior")) {
        vfree(p + 16);
        printf("ok interior\n");
        return 0;
    } else {
        printf("unknown mode %s\n", mode);
        return 2;
    }
    printf("survived\n");
    return 1;
}
