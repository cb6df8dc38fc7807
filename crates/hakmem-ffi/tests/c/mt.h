/* Helpers shared by the multi-threaded C tests: a thread-safe failure report
 * (the first 30 print a `FAIL` line, all count) and the resident set size
 * read from /proc/self/statm. Include after common.h. */
#ifndef HAKMEM_TEST_MT_H
#define HAKMEM_TEST_MT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <unistd.h>

static atomic_long g_fail;
static pthread_mutex_t g_print_lock = PTHREAD_MUTEX_INITIALIZER;

__attribute__((format(printf, 1, 2), unused)) static void fail(const char *fmt, ...) {
    long n = atomic_fetch_add(&g_fail, 1);
    if (n >= 30)
        return;
    pthread_mutex_lock(&g_print_lock);
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    pthread_mutex_unlock(&g_print_lock);
}

/* Resident bytes of this process (0 if /proc is unreadable). */
__attribute__((unused)) static size_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

#endif
