/* An ordinary program for the HAKMEM_STATS=1 test: allocates 5,000 small
 * blocks (all live at once), prints a result, exits through exit(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    enum { N = 5000 };
    static char *ps[N];
    unsigned long sum = 0;
    for (int i = 0; i < N; i++) {
        ps[i] = malloc(16 + (size_t)(i % 64));
        if (!ps[i])
            return 1;
        memset(ps[i], i & 0x7f, 16);
    }
    for (int i = 0; i < N; i++) {
        sum += (unsigned char)ps[i][15];
        free(ps[i]);
    }
    printf("hello %lu\n", sum);
    return 0;
}
