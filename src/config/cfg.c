/* The memory and the error list of a cfg_ctx, and lookups over the tree
 * (cfg_member, cfg_find, cfg_closest). The loader is load.c, the typed
 * readers params.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg_priv.h"

/* ------------------------------------------------------------------ */
/* Memory                                                              */

static struct cfg_mem *mem_of(cfg_ctx *cx)
{
    /* Made on first use, so a zeroed cfg_ctx works too. */
    if (!cx->mem) {
        struct cfg_mem *m = calloc(1, sizeof *m);
        if (!m || arena_init(&m->arena, 8192) != 0) {
            fputs("vie: config: out of memory\n", stderr);
            abort();
        }
        cx->mem = m;
    }
    return cx->mem;
}

void *cfg_alloc(cfg_ctx *cx, size_t size)
{
    void *p = arena_alloc(&mem_of(cx)->arena, size);
    if (!p) {
        /* Only ever at startup, reading the config: nothing to fall back to. */
        fputs("vie: config: out of memory\n", stderr);
        abort();
    }
    memset(p, 0, size);
    return p;
}

char *cfg_strndup(cfg_ctx *cx, const char *s, size_t len)
{
    char *p = cfg_alloc(cx, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *cfg_strdup(cfg_ctx *cx, const char *s)
{
    return s ? cfg_strndup(cx, s, strlen(s)) : NULL;
}

char *cfg_vprintf(cfg_ctx *cx, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0;
    char *p = cfg_alloc(cx, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *cfg_printf(cfg_ctx *cx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = cfg_vprintf(cx, fmt, ap);
    va_end(ap);
    return p;
}

char *cfg_esc(cfg_ctx *cx, const char *s, size_t max)
{
    size_t len = strlen(s);
    bool cut = len > max;
    if (cut) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--; /* not inside a UTF-8 character */
    }
    char *out = cfg_alloc(cx, len * 4 + 4);
    char *o = out;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            o += sprintf(o, "\\x%02x", c);
        } else {
            *o++ = (char)c;
        }
    }
    if (cut) o += sprintf(o, "...");
    *o = '\0';
    return out;
}

void cfg_free(cfg_ctx *cx)
{
    if (!cx) return;
    if (cx->mem) {
        arena_destroy(&cx->mem->arena);
        free(cx->mem);
    }
    memset(cx, 0, sizeof *cx);
}

/* ------------------------------------------------------------------ */
/* Errors                                                              */

void cfg_verror_at(cfg_ctx *cx, const cfg_mark *m, const char *fmt, va_list ap)
{
    char *msg = cfg_vprintf(cx, fmt, ap);
    char *line;
    if (m && m->file && m->line)
        line = cfg_printf(cx, "%s:%u:%u: %s", m->file, m->line, m->col ? m->col : 1, msg);
    else if (m && m->file)
        line = cfg_printf(cx, "%s: %s", m->file, msg);
    else
        line = msg;
    /* One line each, whatever a key, a name or a message holds. */
    for (const char *c = line; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            char *o = cfg_alloc(cx, strlen(line) * 4 + 1), *w = o;
            for (const char *r = line; *r; r++) {
                unsigned char ch = (unsigned char)*r;
                if (ch == '\n')
                    w += sprintf(w, "\\n");
                else if (ch < 0x20 || ch == 0x7f)
                    w += sprintf(w, "\\x%02x", ch);
                else
                    *w++ = (char)ch;
            }
            *w = '\0';
            line = o;
            break;
        }
    }
    cfg_errors *e = &cx->errs;
    if (e->n == e->cap) {
        /* The old array stays in the arena: errors are few. */
        size_t cap = e->cap ? e->cap * 2 : 8;
        char **lines = cfg_alloc(cx, cap * sizeof *lines);
        if (e->n) memcpy(lines, e->lines, e->n * sizeof *lines);
        e->lines = lines;
        e->cap = cap;
    }
    e->lines[e->n++] = line;
}

void cfg_error_at(cfg_ctx *cx, const cfg_mark *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_verror_at(cx, m, fmt, ap);
    va_end(ap);
}

void cfg_print_errors(const cfg_ctx *cx, void *file)
{
    FILE *f = file;
    for (size_t i = 0; i < cx->errs.n; i++)
        fprintf(f, "%s\n", cx->errs.lines[i]);
}

/* ------------------------------------------------------------------ */
/* Lookups                                                             */

const cfg_node *cfg_member(const cfg_node *map, const char *key)
{
    if (!map || map->kind != CFG_MAP || !key) return NULL;
    for (const cfg_node *c = map->first; c; c = c->next)
        if (strcmp(c->key, key) == 0) return c;
    return NULL;
}

const char *cfg_kind_name(const cfg_node *n)
{
    if (!n) return "nothing";
    switch (n->kind) {
    case CFG_MAP: return "a map";
    case CFG_SEQ: return "a list";
    case CFG_SCALAR: return "a string";
    case CFG_NULL: break;
    }
    return "nothing";
}

/* Does label name the start of path, up to a '.' or the end? Returns the
 * rest after the '.', or NULL. */
static const char *match_step(const char *path, const char *label)
{
    if (!label) return NULL;
    size_t n = strlen(label);
    if (strncmp(path, label, n) != 0) return NULL;
    if (path[n] == '\0') return path + n;
    if (path[n] == '.') return path + n + 1;
    return NULL;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0 || n > 9) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

/* What an item of a sequence may be called in a path: its "name" (whose
 * default is its "type", as for middleware), or its "path" (routes). */
static const char *item_label(const cfg_node *item, int which)
{
    const cfg_node *n = NULL;
    if (which == 0) n = cfg_member(item, "name");
    if (which == 1 && !cfg_member(item, "name")) n = cfg_member(item, "type");
    if (which == 2) n = cfg_member(item, "path");
    return n && n->kind == CFG_SCALAR ? n->text : NULL;
}

static const cfg_node *find_in(const cfg_node *node, const char *path, int depth)
{
    if (*path == '\0') return node;
    if (!node || depth > 64) return NULL;
    if (node->kind == CFG_MAP) {
        /* Keys may hold dots themselves ("/a.html"): try every key that
         * matches, the longest first wins. */
        const cfg_node *best = NULL;
        size_t best_len = 0;
        for (const cfg_node *c = node->first; c; c = c->next) {
            const char *rest = match_step(path, c->key);
            size_t len = strlen(c->key);
            if (!rest || (best && len <= best_len)) continue;
            const cfg_node *r = find_in(c, rest, depth + 1);
            if (r) {
                best = r;
                best_len = len;
            }
        }
        return best;
    }
    if (node->kind == CFG_SEQ) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (all_digits(path, n)) {
            size_t idx = (size_t)strtoul(path, NULL, 10);
            const cfg_node *c = node->first;
            for (size_t i = 0; c && i < idx; i++)
                c = c->next;
            if (c) return find_in(c, dot ? dot + 1 : path + n, depth + 1);
        }
        for (int which = 0; which < 3; which++) {
            for (const cfg_node *c = node->first; c; c = c->next) {
                if (c->kind != CFG_MAP) continue;
                const char *rest = match_step(path, item_label(c, which));
                if (!rest) continue;
                const cfg_node *r = find_in(c, rest, depth + 1);
                if (r) return r;
            }
        }
    }
    return NULL;
}

const cfg_node *cfg_find(const cfg_node *root, const char *path)
{
    if (!root || !path) return NULL;
    return find_in(root, path, 0);
}

/* ------------------------------------------------------------------ */
/* Did you mean                                                        */

#define DIST_MAX_LEN 64

/* Damerau-Levenshtein distance (optimal string alignment): a swap of two
 * neighbours is one typo, not two. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > DIST_MAX_LEN || lb > DIST_MAX_LEN) return (size_t)-1;
    size_t d[DIST_MAX_LEN + 1][DIST_MAX_LEN + 1];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

const char *cfg_closest(const char *s, const char *const *names, size_t n)
{
    if (!s || !names) return NULL;
    size_t len = strlen(s);
    size_t limit = len / 3 > 1 ? len / 3 : 1;
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < n && names[i]; i++) {
        size_t d = edit_distance(s, names[i]);
        if (d <= limit && d < best_d) {
            best = names[i];
            best_d = d;
        }
    }
    return best;
}
