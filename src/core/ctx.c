/* Request contexts: their pool and the request accessors of vie.h. */
#include "core/ctx.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "router/path.h"

/* Enough for the decoded params and response headers of a typical
 * request, so the hot path never grows the arena. */
#define CTX_ARENA_FIRST 4096

void ctx_pool_init(ctx_pool *p, vie_app *app, uv_loop_t *loop)
{
    memset(p, 0, sizeof *p);
    p->app = app;
    p->loop = loop;
}

/* The loop must have closed the contexts' timers already (uv_walk). */
void ctx_pool_destroy(ctx_pool *p)
{
    while (p->all) {
        vie_ctx *c = p->all;
        p->all = c->all_next;
        arena_destroy(&c->arena);
        free(c);
    }
    p->free = NULL;
    p->n_free = p->n_all = 0;
}

vie_ctx *ctx_acquire(ctx_pool *p, vie_buf *out)
{
    vie_ctx *c = p->free;
    if (c) {
        p->free = (vie_ctx *)c->conn;
        p->n_free--;
    } else {
        c = calloc(1, sizeof *c + sizeof(http_header) * p->app->limits.max_headers);
        if (!c) return NULL;
        if (arena_init(&c->arena, CTX_ARENA_FIRST) != 0) {
            free(c);
            return NULL;
        }
        c->loop = p->loop;
        if (p->loop) {
            uv_timer_init(p->loop, &c->timer);
            c->timer.data = c;
        }
        c->gen = 1;
        c->all_next = p->all;
        p->all = c;
        p->n_all++;
    }
    /* Everything before gen is per-request state: clear it. */
    memset(c, 0, offsetof(vie_ctx, gen));
    c->app = p->app;
    c->out = out;
    c->req.headers = c->headers;
    c->keep_alive = true;
    c->early_resume = -1;
    c->actor = "vie";
    c->raw_fd = -1;
    return c;
}

void ctx_release(ctx_pool *p, vie_ctx *c)
{
    if (c->loop) uv_timer_stop(&c->timer);
    c->gen++;
    c->exec = EXEC_IDLE;
    arena_reset(&c->arena);
    c->conn = (struct vie_conn *)p->free;
    p->free = c;
    p->n_free++;
}

/* ------------------------------------------------------------------ */
/* Request accessors                                                   */

static vie_str str(const char *p, size_t n)
{
    return (vie_str){p, n};
}

vie_str vie_method(const vie_ctx *c)
{
    return str(c->req.method, c->req.method_len);
}

vie_str vie_path(const vie_ctx *c)
{
    return c->path;
}

vie_str vie_query(const vie_ctx *c)
{
    return str(c->req.query, c->req.query ? c->req.query_len : 0);
}

vie_str vie_body(const vie_ctx *c)
{
    return c->body.ptr ? c->body : str("", 0);
}

int vie_http_minor(const vie_ctx *c)
{
    return c->req.version_minor;
}

void *vie_alloc(vie_ctx *c, size_t size)
{
    return arena_alloc(&c->arena, size);
}

vie_str vie_header(const vie_ctx *c, const char *name)
{
    size_t n = strlen(name);
    for (uint32_t i = 0; i < c->req.n_headers; i++) {
        const http_header *h = &c->req.headers[i];
        if (h->name_len == n && strncasecmp(h->name, name, n) == 0)
            return str(h->value, h->value_len);
    }
    return str(NULL, 0);
}

bool vie_header_at(const vie_ctx *c, size_t i, vie_str *name, vie_str *value)
{
    if (i >= c->req.n_headers) return false;
    const http_header *h = &c->req.headers[i];
    if (name) *name = str(h->name, h->name_len);
    if (value) *value = str(h->value, h->value_len);
    return true;
}

vie_str vie_param(vie_ctx *c, const char *name)
{
    for (uint32_t i = 0; i < c->match.n_params; i++) {
        const router_param *p = &c->match.params[i];
        if (strcmp(p->name, name) != 0) continue;
        char *out = arena_alloc(&c->arena, p->raw_len + 1);
        if (!out) return str(NULL, 0);
        ssize_t n = path_decode(p->raw, p->raw_len, out);
        if (n < 0) return str(NULL, 0); /* the router checked escapes already */
        out[n] = '\0';
        return str(out, (size_t)n);
    }
    return str(NULL, 0);
}

vie_str vie_query_param(vie_ctx *c, const char *name)
{
    if (!c->req.query) return str(NULL, 0);
    size_t name_len = strlen(name);
    const char *q = c->req.query, *end = q + c->req.query_len;
    char small[256];
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pair_end - q));
        const char *key_end = eq ? eq : pair_end;
        size_t key_len = (size_t)(key_end - q);
        /* Decoded keys are never longer than encoded ones. */
        if (key_len >= name_len && key_len < sizeof small) {
            ssize_t kn = path_decode_query(q, key_len, small);
            if (kn == (ssize_t)name_len && memcmp(small, name, name_len) == 0) {
                const char *v = eq ? eq + 1 : pair_end;
                size_t vlen = (size_t)(pair_end - v);
                char *out = arena_alloc(&c->arena, vlen + 1);
                if (!out) return str(NULL, 0);
                ssize_t vn = path_decode_query(v, vlen, out);
                if (vn < 0) return str(NULL, 0);
                out[vn] = '\0';
                return str(out, (size_t)vn);
            }
        }
        q = pair_end + 1;
    }
    return str(NULL, 0);
}
