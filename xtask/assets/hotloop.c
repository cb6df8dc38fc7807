/* Hot loop for `cargo xtask bench --instructions`: N x { p = malloc(32); free(p); }.
 * Run under callgrind twice (N = 1000000 and N = 0); the difference divided by N is
 * the instruction cost of one malloc+free pair, start-up subtracted. */
#include <stdlib.h>

static void *volatile sink;

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    for (long i = 0; i < n; i++) {
        void *p = malloc(32);
        sink = p;
        free(p);
    }
    return 0;
}
