/* Internal logging helpers on top of the public vie_log. */
#ifndef VIE_CORE_LOG_H
#define VIE_CORE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "vie/vie.h"

void vie_logv(vie_log_level level, const char *fmt, va_list ap);
bool log_enabled(vie_log_level level);
/* Every line of this process starts with this after the level ("worker 1.0"). */
void log_set_prefix(const char *fmt, ...) VIE_PRINTF(1, 2);

#define LOG_DEBUG(...) vie_log(VIE_LOG_DEBUG, __VA_ARGS__)
#define LOG_INFO(...)  vie_log(VIE_LOG_INFO, __VA_ARGS__)
#define LOG_WARN(...)  vie_log(VIE_LOG_WARN, __VA_ARGS__)
#define LOG_ERROR(...) vie_log(VIE_LOG_ERROR, __VA_ARGS__)

/* At most one line per interval for events that can come in floods (a
 * connection limit under attack); the next line says how many were
 * suppressed. */
typedef struct log_ratelimit {
    uint64_t interval_ms;
    uint64_t last_ms;
    uint64_t suppressed;
} log_ratelimit;

bool log_ratelimit_allow(log_ratelimit *rl, uint64_t now_ms, uint64_t *suppressed);

#endif
