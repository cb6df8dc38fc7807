/* fork() from a signal handler that interrupted malloc, free or fork in a
 * single-threaded process (the pattern of glibc's malloc/tst-mallocfork2;
 * glibc supports it when the process is single-threaded). A fork handler
 * that takes the allocator's locks waits for the lock the interrupted call
 * of the same thread holds, and hangs.
 *
 *   fork_signal [SECONDS] [--no-hakmem]   run for SECONDS (default 2)
 *
 * A helper process sends SIGUSR1 to this one every 100 us; the handler forks
 * a child that exits at once (status 0) and waits for it. The main loop frees
 * and allocates random sizes (mostly up to 70000 bytes, some up to 3 MiB)
 * and forks every 7th iteration (at least 3 times) a child that allocates,
 * frees and exits with status 0. A watchdog (SIGALRM every second) prints a `HANG:` line and exits
 * 3 when the main loop made no progress for 3 s. Closing line:
 * `fork-signal: N checks, M failures`. */
#include "common.h"
#include <signal.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 1009

static volatile sig_atomic_t g_progress, g_stuck, g_op;
static volatile sig_atomic_t g_handler_forks, g_handler_bad;
static volatile long g_iter;
static volatile pid_t g_sender;

static void on_usr1(int sig) {
    (void)sig;
    int saved = errno;
    pid_t p = fork();
    if (p == 0)
        _exit(0);
    if (p > 0) {
        int st;
        while (waitpid(p, &st, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            g_handler_bad++;
        g_handler_forks++;
    } else {
        g_handler_bad++;
    }
    errno = saved;
}

static void on_alarm(int sig) {
    (void)sig;
    if (g_progress) {
        g_progress = 0;
        g_stuck = 0;
        return;
    }
    if (++g_stuck >= 3) {
        static const char *ops[] = {"the loop", "free", "malloc", "fork", "the fork of the sender"};
        char buf[200];
        int n = snprintf(buf, sizeof buf,
                         "HANG: fork-signal made no progress for 3 s at iteration %ld, inside %s "
                         "(%d forks from the handler)\n",
                         g_iter, ops[g_op], (int)g_handler_forks);
        if (write(1, buf, (size_t)n) < 0) {
        }
        if (g_sender > 0) /* never kill(0, ...): that is the whole process group */
            kill(g_sender, SIGKILL);
        _exit(3);
    }
}

int main(int argc, char **argv) {
    int secs = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-hakmem") == 0)
            g_no_hakmem = 1;
        else
            secs = atoi(argv[i]);
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    have_hakmem();

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);

    /* The watchdog first: the sender's signals can reach this process while
     * its fork of the sender is still running. */
    struct itimerval it = {{1, 0}, {1, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
    pid_t parent = getpid();
    g_op = 4;
    g_sender = fork();
    if (g_sender == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) {
            if (kill(parent, SIGUSR1) != 0)
                _exit(0);
            usleep(100);
        }
    }
    if (!CHECK(g_sender > 0, "fork of the signal sender: %s", strerror(errno)))
        return finish("fork-signal");

    g_op = 0;
    void *obj[SLOTS] = {0};
    unsigned seed = 1;
    long loop_forks = 0, loop_bad = 0;
    time_t end = time(NULL) + secs;
    for (g_iter = 0; time(NULL) < end || loop_forks < 3; g_iter++) {
        int slot = rand_r(&seed) % SLOTS;
        size_t size = rand_r(&seed) % 70000;
        if (rand_r(&seed) % 50 == 0)
            size = (size_t)rand_r(&seed) % (3 << 20);
        if (rand_r(&seed) % 7 == 0) {
            g_op = 3;
            pid_t p = fork();
            if (p == 0) {
                void *b = malloc(size + 1);
                free(obj[slot]);
                free(b);
                _exit(b != NULL ? 0 : 1);
            }
            if (p > 0) {
                int st;
                while (waitpid(p, &st, 0) < 0 && errno == EINTR)
                    ;
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                    loop_bad++;
                loop_forks++;
            } else {
                loop_bad++;
            }
        }
        g_op = 1;
        free(obj[slot]);
        g_op = 2;
        obj[slot] = malloc(size);
        if (obj[slot] != NULL && size > 0)
            ((volatile char *)obj[slot])[size - 1] = 1;
        g_op = 0;
        g_progress = 1;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    kill(g_sender, SIGKILL);
    waitpid(g_sender, NULL, 0);
    for (int i = 0; i < SLOTS; i++)
        free(obj[i]);

    printf("fork-signal-report: iterations=%ld loop-forks=%ld handler-forks=%d in %d s\n", g_iter, loop_forks,
           (int)g_handler_forks, secs);
    CHECK(loop_forks > 0, "no fork in the main loop");
    CHECK(loop_bad == 0, "%ld main-loop forks failed or their child exited badly", loop_bad);
    CHECK(g_handler_forks > 0, "no fork from the signal handler");
    CHECK(g_handler_bad == 0, "%d signal-handler forks failed or their child exited badly", (int)g_handler_bad);
    return finish("fork-signal");
}
