/* PLACEHOLDER: replaced by the real loader and readers (issue 5). */
#include "config/cfg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cfg_load(cfg_ctx *cx, const char *path, const char *env, bool strict)
{
    (void)path;
    (void)env;
    (void)strict;
    memset(cx, 0, sizeof *cx);
    return -1;
}
int cfg_load_text(cfg_ctx *cx, const char *name, const char *text)
{
    (void)name;
    (void)text;
    memset(cx, 0, sizeof *cx);
    return -1;
}
void cfg_free(cfg_ctx *cx)
{
    (void)cx;
}
void cfg_error_at(cfg_ctx *cx, const cfg_mark *m, const char *fmt, ...)
{
    (void)cx;
    (void)m;
    (void)fmt;
}
void cfg_print_errors(const cfg_ctx *cx, void *file)
{
    (void)cx;
    (void)file;
}
void *cfg_alloc(cfg_ctx *cx, size_t size)
{
    (void)cx;
    (void)size;
    return NULL;
}
char *cfg_strdup(cfg_ctx *cx, const char *s)
{
    (void)cx;
    (void)s;
    return NULL;
}
const cfg_node *cfg_member(const cfg_node *map, const char *key)
{
    (void)map;
    (void)key;
    return NULL;
}
const cfg_node *cfg_find(const cfg_node *root, const char *path)
{
    (void)root;
    (void)path;
    return NULL;
}
const char *cfg_kind_name(const cfg_node *n)
{
    (void)n;
    return "?";
}
void cfg_params_init(cfg_params *p, cfg_ctx *cx, const cfg_node *map, const char *what)
{
    memset(p, 0, sizeof *p);
    p->cx = cx;
    p->map = map;
    p->what = what;
}
void cfg_params_sub(cfg_params *p, const char *key, cfg_params *sub)
{
    (void)key;
    cfg_params_init(sub, p->cx, NULL, p->what);
}
int cfg_params_finish(cfg_params *p)
{
    return p->errors;
}
void cfg_error(cfg_params *p, const char *key, const char *fmt, ...)
{
    (void)key;
    (void)fmt;
    p->errors++;
}
bool cfg_has(cfg_params *p, const char *key)
{
    (void)p;
    (void)key;
    return false;
}
bool cfg_require(cfg_params *p, const char *key)
{
    (void)key;
    p->errors++;
    return false;
}
#define PH(name, T)                                                                                \
    bool name(cfg_params *p, const char *key, T *out, T def)                                      \
    {                                                                                              \
        (void)p;                                                                                   \
        (void)key;                                                                                 \
        *out = def;                                                                                \
        return false;                                                                              \
    }
PH(cfg_get_str, const char *)
PH(cfg_get_bool, bool)
PH(cfg_get_percent, double)
#define PHR(name, T)                                                                               \
    bool name(cfg_params *p, const char *key, T *out, T min, T max, T def)                        \
    {                                                                                              \
        (void)p;                                                                                   \
        (void)key;                                                                                 \
        (void)min;                                                                                 \
        (void)max;                                                                                 \
        *out = def;                                                                                \
        return false;                                                                              \
    }
PHR(cfg_get_u64, uint64_t)
PHR(cfg_get_u32, uint32_t)
PHR(cfg_get_int, int)
PHR(cfg_get_double, double)
PHR(cfg_get_ms, uint32_t)
PHR(cfg_get_bytes, uint64_t)
bool cfg_get_enum(cfg_params *p, const char *key, int *out, const char *const *names, int def)
{
    (void)p;
    (void)key;
    (void)names;
    *out = def;
    return false;
}
bool cfg_get_strv(cfg_params *p, const char *key, const char *const **out)
{
    (void)p;
    (void)key;
    *out = NULL;
    return false;
}
const cfg_node *cfg_get_node(cfg_params *p, const char *key)
{
    (void)p;
    (void)key;
    return NULL;
}
const char *cfg_closest(const char *s, const char *const *names, size_t n)
{
    (void)s;
    (void)names;
    (void)n;
    return NULL;
}
