/* fork() while other threads use stdio (the pattern of glibc's
 * malloc/tst-malloc-fork-deadlock): forking threads, reader threads whose
 * getline() grows its buffer with malloc/realloc while it holds its FILE's
 * lock, and one thread calling fflush(NULL), which holds glibc's FILE-list
 * lock while it takes each FILE's lock. An allocator whose fork handler takes
 * its own locks before fork() takes the list lock closes a cycle and hangs.
 *
 *   fork_stdio [SECONDS] [--no-hakmem]   run for SECONDS (default 2);
 *                                        --no-hakmem: without the preload
 *
 * Every child allocates small, medium and large blocks, reads a line through
 * stdio and calls fflush(NULL), then exits with status 17. A watchdog
 * (alarm) prints a `HANG:` line with the progress counters and exits 3 when
 * the run has not ended SECONDS + 6 s after it began. Closing line:
 * `fork-stdio: N checks, M failures`. */
#include "common.h"
#include "mt.h"
#include <signal.h>
#include <sys/wait.h>

#define FORKERS 2
#define READERS 4
#define LINE_LEN 40000

static char g_path[64];
static atomic_int g_stop;
static atomic_long g_forks, g_lines, g_flushes;

static void *forker(void *arg) {
    (void)arg;
    while (!atomic_load(&g_stop)) {
        pid_t p = fork();
        if (p == 0) {
            int bad = 0;
            static const size_t sizes[] = {24, 1000, 40000, 300000, 3 << 20};
            for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
                char *b = malloc(sizes[i]);
                if (b == NULL) {
                    bad = 1;
                    continue;
                }
                memset(b, 0x5a, sizes[i]);
                free(b);
            }
            FILE *f = fopen(g_path, "r");
            char *line = NULL;
            size_t cap = 0;
            if (f == NULL || getline(&line, &cap, f) != LINE_LEN + 1)
                bad = 1;
            free(line);
            if (f != NULL)
                fclose(f);
            fflush(NULL);
            _exit(bad ? 1 : 17);
        }
        if (p < 0) {
            fail("fork: %s", strerror(errno));
            break;
        }
        int st;
        while (waitpid(p, &st, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 17)
            fail("child %d: status %#x, expected exit 17", (int)p, st);
        atomic_fetch_add(&g_forks, 1);
    }
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    FILE *f = fopen(g_path, "r");
    if (f == NULL) {
        fail("reader: fopen %s: %s", g_path, strerror(errno));
        return NULL;
    }
    while (!atomic_load(&g_stop)) {
        rewind(f);
        char *line = NULL; /* fresh each time: getline reallocates as it reads */
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, f);
        if (n != LINE_LEN + 1)
            fail("reader: getline returned %zd, expected %d", n, LINE_LEN + 1);
        free(line);
        atomic_fetch_add(&g_lines, 1);
    }
    fclose(f);
    return NULL;
}

static void *flusher(void *arg) {
    (void)arg;
    while (!atomic_load(&g_stop)) {
        fflush(NULL);
        atomic_fetch_add(&g_flushes, 1);
    }
    return NULL;
}

static void on_alarm(int sig) {
    (void)sig;
    char buf[200];
    int n = snprintf(buf, sizeof buf, "HANG: fork-stdio still running (forks=%ld getlines=%ld fflushes=%ld)\n",
                     atomic_load(&g_forks), atomic_load(&g_lines), atomic_load(&g_flushes));
    if (write(1, buf, (size_t)n) < 0) {
    }
    _exit(3);
}

int main(int argc, char **argv) {
    int secs = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-hakmem") == 0)
            g_no_hakmem = 1;
        else
            secs = atoi(argv[i]);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    have_hakmem();
    snprintf(g_path, sizeof g_path, "/tmp/hakmem-fork-stdio-%d.txt", (int)getpid());
    FILE *f = fopen(g_path, "w");
    if (!CHECK(f != NULL, "fopen %s for writing: %s", g_path, strerror(errno)))
        return finish("fork-stdio");
    for (int i = 0; i < LINE_LEN; i++)
        fputc('x', f);
    fputc('\n', f);
    fclose(f);

    signal(SIGALRM, on_alarm);
    alarm((unsigned)secs + 6);
    pthread_t t[FORKERS + READERS + 1];
    int k = 0;
    for (int i = 0; i < READERS; i++)
        pthread_create(&t[k++], NULL, reader, NULL);
    pthread_create(&t[k++], NULL, flusher, NULL);
    for (int i = 0; i < FORKERS; i++)
        pthread_create(&t[k++], NULL, forker, NULL);
    sleep((unsigned)secs);
    atomic_store(&g_stop, 1);
    for (int i = 0; i < k; i++)
        pthread_join(t[i], NULL);
    alarm(0);
    unlink(g_path);

    /* The parent's stdio and allocator still work after all those forks. */
    fflush(NULL);
    char *p = malloc(100000);
    CHECK(p != NULL, "malloc after the forks");
    free(p);
    long forks = atomic_load(&g_forks), lines = atomic_load(&g_lines), flushes = atomic_load(&g_flushes);
    printf("fork-stdio-report: forks=%ld getlines=%ld fflushes=%ld in %d s\n", forks, lines, flushes, secs);
    CHECK(forks > 0, "no fork completed");
    CHECK(lines > 0, "no getline completed");
    CHECK(flushes > 0, "no fflush(NULL) completed");
    CHECK(atomic_load(&g_fail) == 0, "%ld failures in the threads or children", atomic_load(&g_fail));
    return finish("fork-stdio");
}
