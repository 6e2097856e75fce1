/* Crash signals inside a layer or handler.
 *
 * SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT are caught on an alternate
 * stack (the fault may be a stack overflow). If the executor was running a
 * hook or handler (its jump point is armed), the crash is recorded with
 * async-signal-safe writes only (signal, layer, route, a backtrace to
 * stderr), the signal is unblocked and the stack unwinds to the executor
 * as for vie_panic: the culprit gets 500 and the after hooks and defers
 * run. But after a memory fault the heap may already be corrupt, so a
 * worker is then tainted: it stops accepting, lets its in-flight requests
 * finish, and exits for the supervisor to replace it. With on_crash: exit,
 * or outside any hook, the signal is re-raised and the process dies.
 */
#include "server/crash.h"

#include <execinfo.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/executor_current.h"
#include "core/log.h"

static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
#define N_CRASH_SIGNALS (sizeof crash_signals / sizeof crash_signals[0])

static vie_on_crash g_mode;
static volatile sig_atomic_t g_in_handler;

/* write(2) of a NUL-terminated string: all a signal handler may do. */
static void say(const char *s)
{
    ssize_t w = write(STDERR_FILENO, s, strlen(s));
    (void)w;
}

static void say_num(long v)
{
    char buf[24], *p = buf + sizeof buf;
    *--p = '\0';
    bool neg = v < 0;
    unsigned long u = neg ? (unsigned long)-v : (unsigned long)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (neg) *--p = '-';
    say(p);
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
    }
    return "signal";
}

static void die(int sig)
{
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
}

static void on_crash_signal(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    (void)uc;
    vie_ctx *c = executor_current;
    if (g_in_handler) die(sig); /* crashed while handling a crash */
    g_in_handler = 1;
    say("CRASH ");
    say(signal_name(sig));
    say(" in pid ");
    say_num((long)getpid());
    if (c) {
        say(" in ");
        say(executor_current_layer(c));
        say(" (route ");
        say(executor_current_route(c));
        say(")");
    }
    say("; backtrace:\n");
    void *frames[32];
    int n = backtrace(frames, 32);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    if (!c || !executor_can_unwind(c) || g_mode == VIE_ON_CRASH_EXIT) {
        if (c && g_mode == VIE_ON_CRASH_EXIT) {
            executor_crash_count(c); /* lock-free atomics: safe here */
            executor_crash_answer_raw(c);
        }
        say(c ? "CRASH: on_crash is exit: re-raising\n"
              : "CRASH: not inside a layer or handler: re-raising\n");
        die(sig);
        return;
    }
    /* Unblock it (the jump point did not save the mask), then unwind. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    g_in_handler = 0;
    executor_unwind_crash(c, sig);
}

int crash_install(vie_on_crash mode)
{
    g_mode = mode;
    /* backtrace() loads libgcc on first use, which mallocs: do it now. */
    void *warm[2];
    backtrace(warm, 2);
    /* The alternate stack is per thread. Keep one already there (a
     * sanitizer's, which it will unmap itself); else give this thread one,
     * for its life. */
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0) return -1;
    if (cur.ss_flags & SS_DISABLE) {
        size_t size = 64 * 1024;
        char *alt = malloc(size);
        if (!alt) return -1;
        stack_t st = {.ss_sp = alt, .ss_size = size, .ss_flags = 0};
        if (sigaltstack(&st, NULL) != 0) {
            free(alt);
            return -1;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_crash_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_CRASH_SIGNALS; i++)
        if (sigaction(crash_signals[i], &sa, NULL) != 0) return -1;
    return 0;
}
