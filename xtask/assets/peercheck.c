/* Check of a peer allocator built by `cargo xtask bench` (xtask/src/peers.rs), run with
 * LD_PRELOAD=<the .so>: prints, for each function of the malloc family, the file that
 * defines the symbol the process resolves ("NAME PATH", "NAME ?" when unresolved), then
 * calls each one and checks what it returns. Exit 0 when every call behaved. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const NAMES[] = {
    "malloc", "free", "calloc", "realloc", "posix_memalign", "aligned_alloc", "malloc_usable_size",
};

int main(void) {
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        void *f = dlsym(RTLD_DEFAULT, NAMES[i]);
        Dl_info info;
        if (f != NULL && dladdr(f, &info) != 0 && info.dli_fname != NULL) {
            printf("%s %s\n", NAMES[i], info.dli_fname);
        } else {
            printf("%s ?\n", NAMES[i]);
        }
    }
    char *p = malloc(100);
    if (p == NULL) return 2;
    memset(p, 7, 100);
    p = realloc(p, 5000);
    if (p == NULL || p[99] != 7 || malloc_usable_size(p) < 5000) return 3;
    unsigned char *z = calloc(100, 10);
    if (z == NULL) return 4;
    for (int i = 0; i < 1000; i++) {
        if (z[i] != 0) return 4;
    }
    void *a = NULL;
    if (posix_memalign(&a, 256, 100) != 0 || ((uintptr_t)a & 255) != 0) return 5;
    void *b = aligned_alloc(4096, 4096);
    if (b == NULL || ((uintptr_t)b & 4095) != 0) return 6;
    free(p);
    free(z);
    free(a);
    free(b);
    puts("ok");
    return 0;
}
