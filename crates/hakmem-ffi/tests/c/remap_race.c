/* Moving a big block (realloc that cannot grow in place: mremap onto a new reservation)
 * while other threads map and unmap direct mappings: the kernel may hand the vacated range
 * to the next mapping at once, which must keep its owner-map tag (a block of it read as
 * foreign: malloc_usable_size 0, "not allocated by hakmem" on free).
 * Usage: remap_race SECONDS. Prints "ok N allocations, 0 foreign". */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <malloc.h>
#include <time.h>
static volatile int stop;
static void *grower(void *arg) {
    (void)arg;
    while (!stop) {
        char *p = malloc(3 << 20);
        p[0] = 1;
        char *q = realloc(p, 24 << 20);
        if (!q) abort();
        q[0] = 2;
        free(q);
    }
    return NULL;
}
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 2;
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, grower, NULL);
    struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
    long n = 0, bad = 0;
    for (;;) {
        char *p = malloc((1 << 20) + 4096 * (n % 64));
        if (malloc_usable_size(p) == 0) { bad++; if (bad < 5) fprintf(stderr, "usable 0 for %p\n", p); }
        free(p);
        n++;
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (b.tv_sec - a.tv_sec + (b.tv_nsec - a.tv_nsec) / 1e9 > secs) break;
    }
    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    printf("%s %ld allocations, %ld foreign\n", bad ? "FAIL" : "ok", n, bad);
    return bad != 0;
}
