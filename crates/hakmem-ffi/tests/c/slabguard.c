/* The hardened mode (HAKMEM_SECURE=1) ends every slab in a guard page: this program finds
 * the SIZE-byte block nearest its slab's end (SLAB bytes) and writes from its end to the
 * slab's end. Usage: slabguard SIZE SLAB. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <malloc.h>
/* The hardened mode (HAKMEM_SECURE=1) ends every slab in a guard page. Usage: slabguard
 * SIZE SLAB_SIZE. Finds the block of SIZE bytes nearest its slab's end (SLAB bytes) and writes past it. */
int main(int argc, char **argv) {
    size_t size = argc > 1 ? strtoul(argv[1], 0, 10) : 1000;
    size_t slab = argc > 2 ? strtoul(argv[2], 0, 10) : 65536;
    char *best = 0; size_t best_off = 0;
    for (int i = 0; i < 4000; i++) {
        char *p = malloc(size);
        size_t off = (uintptr_t)p & (slab - 1);
        if (off > best_off) { best_off = off; best = p; }
    }
    size_t u = malloc_usable_size(best);
    printf("block %p at offset %zu, usable %zu: writing %zu bytes past it\n", (void*)best, best_off, u, slab - best_off - u);
    fflush(stdout);
    memset(best + u, 'X', slab - best_off - u); /* the bug under test: up to the slab's end */
    printf("no fault\n");
    return 0;
}
