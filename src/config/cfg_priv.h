/* Private to src/config: the memory behind a cfg_ctx and helpers the
 * loader and the readers share. */
#ifndef VIE_CONFIG_CFG_PRIV_H
#define VIE_CONFIG_CFG_PRIV_H

#include <stdarg.h>

#include "config/cfg.h"
#include "core/arena.h"

struct cfg_mem {
    vie_arena arena;
    size_t nodes; /* nodes made so far: aliases must not expand without bound */
};

/* Nodes one load may make (aliases can multiply a small file). */
#define CFG_MAX_NODES 200000

void cfg_verror_at(cfg_ctx *cx, const cfg_mark *m, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
char *cfg_strndup(cfg_ctx *cx, const char *s, size_t len);
char *cfg_printf(cfg_ctx *cx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s for a message: at most max bytes (then "..."), with '"', '\\' and
 * control characters escaped, so every error stays one line. */
char *cfg_esc(cfg_ctx *cx, const char *s, size_t max);
char *cfg_vprintf(cfg_ctx *cx, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#endif
