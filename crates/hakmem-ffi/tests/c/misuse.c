/* Heap misuse probes, one per process: `misuse PROBE SIZE`.
 *
 *   uaf        an 8-byte write of a chosen address into a freed block's first word
 *   overflow8  an 8-byte overflow past a block into its free neighbour
 *   overflow16 the same, 16 bytes
 *   double     the same block freed twice by its own thread
 *   remote     the same block freed twice by another thread
 *   interior   free(p + 16)
 *
 * hakmem must report the misuse on stderr and, by default, abort; with
 * HAKMEM_ON_ERROR=warn it continues: the program then allocates 1,000 blocks of the same
 * size and checks that none is foreign (not hakmem's, or the chosen address), none is handed
 * out twice or overlaps another, and a live neighbour kept its contents. It prints
 * `ok PROBE SIZE` at the end. Exit 2: the probe could not be set up (no adjacent pair). */
#include "common.h"
#include <pthread.h>
#include <malloc.h>

static char target[4096] __attribute__((aligned(64)));
static void *(*volatile vmalloc)(size_t) = malloc;
static void (*volatile vfree)(void *) = free;

#define N 1000
static char *blocks[N];

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* The 1,000 allocations after the misuse: hakmem's, distinct, not overlapping. */
static void check_after(size_t size, const char *keep, size_t keep_len, char keep_byte) {
    for (int i = 0; i < N; i++) {
        blocks[i] = vmalloc(size);
        CHECK(blocks[i] != NULL, "malloc(%zu) #%d failed", size, i);
        if (!blocks[i]) return;
        CHECK(blocks[i] != target, "malloc returned the chosen address");
        CHECK(!hakmem_owns || hakmem_owns(blocks[i]), "malloc returned %p, not hakmem's",
              (void *)blocks[i]);
        memset(blocks[i], 0x5A, size);
    }
    char *sorted[N];
    memcpy(sorted, blocks, sizeof sorted);
    qsort(sorted, N, sizeof *sorted, cmp_ptr);
    for (int i = 1; i < N; i++)
        CHECK(sorted[i - 1] + size <= sorted[i], "blocks %p and %p overlap (size %zu)",
              (void *)sorted[i - 1], (void *)sorted[i], size);
    if (keep) {
        int intact = 1;
        for (size_t i = 0; i < keep_len; i++) intact &= keep[i] == keep_byte;
        CHECK(intact, "the live block %p was overwritten", (const void *)keep);
    }
}

/* Two live blocks of `size`, the second starting where the first's usable size ends. */
static int adjacent_pair(size_t size, char **a, char **b) {
    char *p[64];
    int found = 0;
    for (int i = 0; i < 64; i++) p[i] = vmalloc(size);
    for (int i = 0; i < 64 && !found; i++)
        for (int j = 0; j < 64 && !found; j++)
            if (p[j] == p[i] + malloc_usable_size(p[i])) {
                *a = p[i];
                *b = p[j];
                found = 1;
            }
    return found;
}

static void *remote_twice(void *p) {
    vfree(p);
    vfree(p);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        printf("usage: misuse PROBE SIZE\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *probe = argv[1];
    size_t size = strtoul(argv[2], NULL, 10);
    char *keep = vmalloc(size);
    memset(keep, 'K', size);
    if (!strcmp(probe, "uaf")) {
        char *a = vmalloc(size);
        vfree(a);
        *(uintptr_t *)a = (uintptr_t)target;
        check_after(size, keep, size, 'K');
    } else if (!strcmp(probe, "overflow8") || !strcmp(probe, "overflow16")) {
        char *a, *b;
        if (!adjacent_pair(size, &a, &b)) {
            printf("no adjacent pair of %zu-byte blocks\n", size);
            return 2;
        }
        memset(a, 'A', malloc_usable_size(a));
        vfree(b);
        size_t n = probe[8] == '8' ? 8 : 16;
        uintptr_t t[2] = {(uintptr_t)target, (uintptr_t)target};
        memcpy(a + malloc_usable_size(a), t, n); /* the bug under test */
        check_after(size, a, malloc_usable_size(a), 'A');
    } else if (!strcmp(probe, "double")) {
        char *p = vmalloc(size);
        vfree(p);
        vfree(p);
        check_after(size, keep, size, 'K');
    } else if (!strcmp(probe, "remote")) {
        char *p = vmalloc(size);
        pthread_t t;
        pthread_create(&t, NULL, remote_twice, p);
        pthread_join(t, NULL);
        malloc_trim(0);
        check_after(size, keep, size, 'K');
    } else if (!strcmp(probe, "interior")) {
        char *p = vmalloc(size);
        memset(p, 'P', size);
        vfree(p + 16);
        check_after(size, p, size, 'P');
    } else if (!strcmp(probe, "noncanonical")) {
        /* The block's address with a bit set above the user address space: it must not be
         * taken for the block by its low bits. */
        char *p = vmalloc(size);
        memset(p, 'P', size);
        vfree((void *)((uintptr_t)p | (1ull << 63)));
        vfree((void *)((uintptr_t)p | (1ull << 47)));
        check_after(size, p, size, 'P');
        vfree(p);
    } else {
        printf("unknown probe %s\n", probe);
        return 2;
    }
    if (g_failures) return 1;
    printf("ok %s %zu\n", probe, size);
    return 0;
}
