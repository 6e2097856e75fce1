/* One line per event on stderr, with a UTC timestamp in milliseconds.
 * Lines are formatted into a stack buffer and written with one write(2)
 * so lines from several workers never interleave. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static vie_log_level g_level = VIE_LOG_INFO;
static char g_prefix[48]; /* "worker 1.0 " in workers; empty in a single process */

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_set_prefix(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g_prefix, sizeof g_prefix - 1, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof g_prefix - 2) n = (int)sizeof g_prefix - 2;
    g_prefix[n] = ' ';
    g_prefix[n + 1] = '\0';
}

void vie_log_set_level(vie_log_level level)
{
    g_level = level;
}

bool log_enabled(vie_log_level level)
{
    return level >= g_level && level < VIE_LOG_OFF;
}

void vie_logv(vie_log_level level, const char *fmt, va_list ap)
{
    if (!log_enabled(level)) return;
    char line[2048];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), level_names[level], g_prefix);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2; /* truncated: still one line */
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nowhere better to report a failing stderr */
}

void vie_log(vie_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vie_logv(level, fmt, ap);
    va_end(ap);
}

bool log_ratelimit_allow(log_ratelimit *rl, uint64_t now_ms, uint64_t *suppressed)
{
    if (rl->last_ms != 0 && now_ms - rl->last_ms < rl->interval_ms) {
        rl->suppressed++;
        return false;
    }
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    rl->last_ms = now_ms ? now_ms : 1;
    return true;
}
