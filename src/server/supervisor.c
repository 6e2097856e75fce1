/* The supervisor: one process that owns the listening socket and the
 * shared-memory counters, forks the workers, and keeps them alive.
 *
 * The listening socket is made here, before any fork, and shared: a
 * worker that dies leaves its queued connections to the others (per-worker
 * SO_REUSEPORT sockets would drop their queue with it).
 *
 * No event loop here: the supervisor blocks its signals and waits for
 * them with sigtimedwait, so fork never has a libuv loop to untangle.
 *   SIGCHLD          a worker died: log it, replace it (with back-off when
 *                    workers die young, a crash loop)
 *   SIGTERM, SIGINT  stop: workers drain (in-flight requests finish), exit 0
 *   SIGHUP           reload: start a new generation of workers, then retire
 *                    the old one, which drains; no request fails
 *   SIGUSR1          passed on to the workers (log files)
 */
#include "server/supervisor.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/inflight.h"
#include "core/log.h"
#include "server/server.h"

#define MAX_WORKERS 256
/* A worker that dies younger than this was probably killed by its start. */
#define YOUNG_MS         1000
#define BACKOFF_FIRST_MS 100
/* A worker that contained a crash drains and exits with this status. */
#define EXIT_TAINTED 3

typedef struct worker {
    pid_t pid; /* 0: free slot */
    int index; /* its place, 0..workers-1, kept by replacements */
    unsigned generation;
    uint64_t started_ms;
    bool retiring; /* sent SIGTERM: a planned exit */
    int region;    /* its rows in the in-flight table */
} worker;

typedef struct supervisor {
    vie_app *app;      /* the current generation's */
    vie_app *original; /* the caller's: never freed here */
    int listen_fd;
    int n; /* workers wanted per generation */
    unsigned generation;
    worker w[MAX_WORKERS * 2]; /* room for two generations during a reload */
    /* Replacements waiting for their back-off, per index. */
    uint64_t restart_at[MAX_WORKERS];
    bool restart_pending[MAX_WORKERS];
    uint32_t backoff_ms[MAX_WORKERS];
    uint32_t young_deaths[MAX_WORKERS]; /* consecutive deaths within YOUNG_MS of a start */
    bool stopping;
    uint64_t stop_deadline_ms;
} supervisor;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static sigset_t handled_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    return set;
}

/* In the child: become a worker and never return. */
static void worker_main(supervisor *sv, int index, unsigned generation, int region)
{
    /* SIGTERM, SIGINT and SIGUSR1 stay blocked until the worker's loop has
     * handlers for them (server_init), so a retirement sent right after
     * the fork is held, not fatal. SIGCHLD and SIGHUP are not for workers. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    signal(SIGHUP, SIG_IGN);
    /* A worker must not outlive its supervisor (kill -9 of the parent). */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) _exit(0);
    log_set_prefix("worker %d.%u", index, generation);
    atomic_store(&sv->app->stop_requested, false); /* the supervisor's, not ours */
    atomic_store(&sv->app->supervising, false);
    inflight_set_region(sv->app, region);
    vie_app *app = sv->app;
    app->opt.handle_signals = true;
    int rc = server_serve(app, sv->listen_fd);
    _exit(app->tainted ? EXIT_TAINTED : rc == VIE_OK ? 0 : 1);
}

static worker *free_slot(supervisor *sv)
{
    for (int i = 0; i < MAX_WORKERS * 2; i++)
        if (!sv->w[i].pid) return &sv->w[i];
    return NULL;
}

static int spawn(supervisor *sv, int index)
{
    worker *w = free_slot(sv);
    if (!w) return -1;
    /* The lowest in-flight region no live worker holds. */
    int region = 0;
    for (bool taken = true; taken && region < INFLIGHT_REGIONS; region += taken) {
        taken = false;
        for (int i = 0; i < MAX_WORKERS * 2; i++)
            if (sv->w[i].pid && sv->w[i].region == region) taken = true;
    }
    if (region >= INFLIGHT_REGIONS) region = -1; /* untracked in /debug/requests */
    pid_t pid = fork();
    if (pid < 0) {
        LOG_ERROR("supervisor: cannot fork worker %d: %s", index, strerror(errno));
        return -1;
    }
    if (pid == 0) worker_main(sv, index, sv->generation, region);
    *w = (worker){.pid = pid,
                  .index = index,
                  .generation = sv->generation,
                  .started_ms = now_ms(),
                  .region = region};
    LOG_INFO("supervisor: worker %d.%u started (pid %d)", index, sv->generation, (int)pid);
    return 0;
}

static void signal_generation(supervisor *sv, int signum, bool old_only)
{
    for (int i = 0; i < MAX_WORKERS * 2; i++) {
        worker *w = &sv->w[i];
        if (!w->pid || (old_only && w->generation == sv->generation)) continue;
        if (signum == SIGTERM) w->retiring = true;
        kill(w->pid, signum);
    }
}

static int live_workers(const supervisor *sv)
{
    int n = 0;
    for (int i = 0; i < MAX_WORKERS * 2; i++)
        n += sv->w[i].pid != 0;
    return n;
}

static void describe_exit(int status, char *buf, size_t cap)
{
    if (WIFSIGNALED(status))
        snprintf(buf, cap, "killed by signal %d (%s)%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
}

static void reap(supervisor *sv)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        worker *w = NULL;
        for (int i = 0; i < MAX_WORKERS * 2 && !w; i++)
            if (sv->w[i].pid == pid) w = &sv->w[i];
        if (!w) continue;
        char how[128];
        describe_exit(status, how, sizeof how);
        bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        int index = w->index;
        bool current = w->generation == sv->generation;
        bool planned = w->retiring || sv->stopping;
        uint64_t age = now_ms() - w->started_ms;
        *w = (worker){0};
        if (planned && clean) {
            LOG_INFO("supervisor: worker %d (pid %d) drained and exited", index, (int)pid);
            continue;
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_TAINTED) {
            LOG_WARN("supervisor: worker %d (pid %d) contained a crash, drained and exited: "
                     "replacing it",
                     index, (int)pid);
            if (!sv->stopping && current) {
                sv->restart_pending[index] = true;
                sv->restart_at[index] = now_ms();
            }
            continue;
        }
        LOG_ERROR("supervisor: worker %d (pid %d) %s after %llu ms%s", index, (int)pid, how,
                  (unsigned long long)age, planned ? " while retiring" : "");
        if (sv->stopping || !current) continue;
        /* Replace it; back off while workers keep dying young. */
        uint32_t *b = &sv->backoff_ms[index];
        if (age >= YOUNG_MS) {
            sv->young_deaths[index] = 0;
            *b = 0;
        } else if (++sv->young_deaths[index] >= 2) {
            /* Dying young twice in a row: a crash loop. Back off. */
            *b = *b ? *b * 2 : BACKOFF_FIRST_MS;
            if (*b > sv->app->opt.restart_backoff_max_ms) *b = sv->app->opt.restart_backoff_max_ms;
            LOG_ERROR("supervisor: worker %d is crashing in a loop (it lived %llu ms): next "
                      "start in %u ms",
                      index, (unsigned long long)age, *b);
        }
        sv->restart_pending[index] = true;
        sv->restart_at[index] = now_ms() + *b;
    }
}

static void start_due(supervisor *sv)
{
    uint64_t now = now_ms();
    for (int i = 0; i < sv->n; i++) {
        if (!sv->restart_pending[i] || sv->restart_at[i] > now) continue;
        sv->restart_pending[i] = false;
        if (spawn(sv, i) == 0) sv->app->stats->worker_restarts++;
    }
}

/* Milliseconds until the next timed event, for sigtimedwait. */
static uint64_t next_wait_ms(const supervisor *sv)
{
    uint64_t now = now_ms(), wait = 1000;
    for (int i = 0; i < sv->n; i++)
        if (sv->restart_pending[i])
            wait = sv->restart_at[i] <= now
                       ? 0
                       : (sv->restart_at[i] - now < wait ? sv->restart_at[i] - now : wait);
    if (sv->stopping)
        wait = sv->stop_deadline_ms <= now
                   ? 0
                   : (sv->stop_deadline_ms - now < wait ? sv->stop_deadline_ms - now : wait);
    return wait;
}

/* The app of the next generation, when the app can make one (a config
 * re-read); false when it refused (the old app keeps serving). */
static bool next_app(supervisor *sv)
{
    vie_app *old = sv->app;
    if (!old->reload_fn) return true;
    vie_app *app = old->reload_fn(old->reload_arg);
    if (!app || vie_app_freeze(app) != VIE_OK) {
        LOG_ERROR("supervisor: SIGHUP: the new config was refused (see above); the current "
                  "generation keeps serving");
        if (app) vie_app_free(app);
        return false;
    }
    if (strcmp(app->listen, old->listen) != 0)
        LOG_WARN("supervisor: SIGHUP: listen changed from %s to %s: that takes a restart; "
                 "still listening on %s",
                 old->listen, app->listen, old->listen);
    if (!app->reload_fn) vie_app_on_reload(app, old->reload_fn, old->reload_arg);
    atomic_store(&app->supervising, true);
    app->stats->worker_restarts += old->stats->worker_restarts;
    int n = app->opt.workers < 1             ? 1
            : app->opt.workers > MAX_WORKERS ? MAX_WORKERS
                                             : app->opt.workers;
    sv->n = n;
    sv->app = app;
    /* The old generation's workers have their own copy of the old app and
     * their own mapping of its counters: the supervisor's copy can go. */
    if (old != sv->original) vie_app_free(old);
    return true;
}

static void reload(supervisor *sv)
{
    if (!next_app(sv)) return;
    sv->generation++;
    LOG_INFO("supervisor: SIGHUP: starting generation %u, then retiring the previous one",
             sv->generation);
    for (int i = 0; i < sv->n; i++) {
        sv->restart_pending[i] = false;
        sv->backoff_ms[i] = 0;
        sv->young_deaths[i] = 0;
        spawn(sv, i);
    }
    /* The new workers accept on the same socket from now on; the old ones
     * stop accepting, finish what they have, and exit. */
    signal_generation(sv, SIGTERM, true);
}

int supervisor_run(vie_app *app)
{
    supervisor *sv = calloc(1, sizeof *sv);
    if (!sv) return VIE_ENOMEM;
    sv->app = app;
    sv->original = app;
    sv->n = app->opt.workers > MAX_WORKERS ? MAX_WORKERS : app->opt.workers;
    if (!app->opt.restart_backoff_max_ms) app->opt.restart_backoff_max_ms = 30000;
    int rc = server_listen_socket(&app->opt, &sv->listen_fd);
    if (rc != VIE_OK) {
        free(sv);
        return rc;
    }
    sigset_t set = handled_signals();
    sigprocmask(SIG_BLOCK, &set, NULL);
    atomic_store(&app->supervising, true);
    LOG_INFO("supervisor: pid %d, %d worker%s", (int)getpid(), sv->n, sv->n > 1 ? "s" : "");
    for (int i = 0; i < sv->n; i++)
        spawn(sv, i);

    while (!(sv->stopping && live_workers(sv) == 0)) {
        /* vie_app_stop (any thread, or before the run) raises SIGTERM on
         * this process; a stop asked before the workers existed is seen here. */
        if (atomic_exchange(&app->stop_requested, false) && !sv->stopping) raise(SIGTERM);
        uint64_t wait = next_wait_ms(sv);
        struct timespec ts = {(time_t)(wait / 1000), (long)(wait % 1000) * 1000000};
        siginfo_t info;
        int sig = sigtimedwait(&set, &info, &ts);
        switch (sig) {
        case SIGCHLD: reap(sv); break;
        case SIGTERM:
        case SIGINT:
            if (!sv->stopping) {
                LOG_INFO("supervisor: %s: workers finish their requests, then exit",
                         sig == SIGINT ? "SIGINT" : "SIGTERM");
                sv->stopping = true;
                sv->stop_deadline_ms = now_ms() + sv->app->opt.drain_timeout_ms + 2000;
                /* New connections are refused from now on rather than queued
                 * for workers that no longer accept. */
                close(sv->listen_fd);
                sv->listen_fd = -1;
                signal_generation(sv, SIGTERM, false);
            }
            break;
        case SIGHUP:
            if (!sv->stopping) reload(sv);
            break;
        case SIGUSR1: signal_generation(sv, SIGUSR1, false); break;
        default: break; /* timeout or EINTR */
        }
        reap(sv);
        if (!sv->stopping) start_due(sv);
        if (sv->stopping && now_ms() >= sv->stop_deadline_ms && live_workers(sv) > 0) {
            LOG_WARN("supervisor: %d worker(s) still running past the drain deadline: killing",
                     live_workers(sv));
            signal_generation(sv, SIGKILL, false);
            sv->stop_deadline_ms = now_ms() + 5000;
        }
    }
    if (sv->listen_fd >= 0) close(sv->listen_fd);
    atomic_store(&app->supervising, false);
    atomic_store(&app->stop_requested, false);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    LOG_INFO("supervisor: stopped");
    if (sv->app != app) vie_app_free(sv->app);
    free(sv);
    return VIE_OK;
}
