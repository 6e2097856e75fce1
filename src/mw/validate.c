/* validate: refuse a malformed request before the handler sees it:
 * required headers and query parameters (400 naming what is missing), a
 * body's media type (415 naming the accepted ones) and well-formed JSON
 * bodies (400 with the byte offset of the first error, json_check.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/app.h"
#include "core/log.h"
#include "mw/json_check.h"
#include "mw/mw.h"

typedef struct vstate {
    char **headers; /* NULL-terminated, or NULL */
    char **query;
    char **types;     /* lowercase "type/subtype" or "type/ *" */
    char *types_text; /* "application/json, text/plain": for messages */
    bool json;
} vstate;

static void strv_free(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

static void v_free(void *state)
{
    vstate *s = state;
    if (!s) return;
    strv_free(s->headers);
    strv_free(s->query);
    strv_free(s->types);
    free(s->types_text);
    free(s);
}

static size_t strv_len(const char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

/* A copy (lowercased when lower), NULL for an empty list; *ok false when
 * out of memory. */
static char **strv_dup(const char *const *v, bool lower, bool *ok)
{
    size_t n = strv_len(v);
    if (!n) return NULL;
    char **out = calloc(n + 1, sizeof *out);
    if (!out) return *ok = false, NULL;
    for (size_t i = 0; i < n; i++) {
        if (!(out[i] = strdup(v[i]))) {
            *ok = false;
            strv_free(out);
            return NULL;
        }
        for (char *p = out[i]; lower && *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p += 'a' - 'A';
    }
    return out;
}

static bool tchar(char c)
{
    return c > ' ' && c < 127 && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

static bool is_token(const char *s, size_t n)
{
    if (!n) return false;
    for (size_t i = 0; i < n; i++)
        if (!tchar(s[i])) return false;
    return true;
}

/* "type/subtype" or "type/ *" (no space), both tokens. */
static bool is_media_range(const char *s)
{
    const char *slash = strchr(s, '/');
    if (!slash || !is_token(s, (size_t)(slash - s))) return false;
    return !strcmp(slash + 1, "*") || is_token(slash + 1, strlen(slash + 1));
}

/* ------------------------------------------------------------------ */
/* The layer                                                           */

/* Append "a, b" style items to a fixed buffer, truncating with "...". */
static void list_add(char *buf, size_t cap, size_t *len, const char *item, size_t n)
{
    if (*len >= cap) return;
    int w = snprintf(buf + *len, cap - *len, "%s%.*s", *len ? ", " : "", (int)n, item);
    if (w < 0) return;
    *len += (size_t)w;
    if (*len >= cap) {
        *len = cap;
        if (cap > 4) memcpy(buf + cap - 4, "...", 4);
    }
}

static vie_status missing(vie_ctx *c, const char *what, char *const *names, bool headers)
{
    char list[400];
    size_t len = 0, n = 0;
    list[0] = 0;
    for (char *const *p = names; *p; p++) {
        bool there = headers ? vie_header(c, *p).ptr != NULL : vie_query_param(c, *p).ptr != NULL;
        if (there) continue;
        list_add(list, sizeof list, &len, *p, strlen(*p));
        n++;
    }
    if (!n) return VIE_NEXT;
    char detail[480];
    snprintf(detail, sizeof detail, "missing required %s%s: %s", what, n > 1 ? "s" : "", list);
    return vie_send_problem(c, 400, detail);
}

static bool type_accepted(const vstate *s, const char *t, size_t n)
{
    for (char **p = s->types; *p; p++) {
        size_t l = strlen(*p);
        if (!strcmp(*p, "*/*")) { /* any type, as long as there is one */
            if (n >= 3 && memchr(t, '/', n)) return true;
        } else if ((*p)[l - 1] == '*') { /* "type/ *": the type and its slash */
            if (n > l - 1 && !strncasecmp(t, *p, l - 1)) return true;
        } else if (n == l && !strncasecmp(t, *p, l))
            return true;
    }
    return false;
}

static vie_status v_before(vie_ctx *c, void *state)
{
    vstate *s = state;
    vie_status st;
    if (s->headers && (st = missing(c, "header", s->headers, true)) != VIE_NEXT) return st;
    if (s->query && (st = missing(c, "query parameter", s->query, false)) != VIE_NEXT) return st;
    vie_str body = vie_body(c);
    if (!body.len) return VIE_NEXT; /* the rules below are about a body */
    char detail[480];
    if (s->types) {
        vie_str ct = vie_header(c, "Content-Type");
        if (!ct.ptr) {
            snprintf(detail, sizeof detail, "a body needs a Content-Type; accepted: %s",
                     s->types_text);
            return vie_send_problem(c, 415, detail);
        }
        /* The media type: before any parameter, without whitespace. */
        size_t n = 0;
        while (n < ct.len && ct.ptr[n] != ';')
            n++;
        while (n && (ct.ptr[n - 1] == ' ' || ct.ptr[n - 1] == '\t'))
            n--;
        if (!type_accepted(s, ct.ptr, n)) {
            snprintf(detail, sizeof detail, "Content-Type \"%.*s\" is not accepted; accepted: %s",
                     (int)(n > 100 ? 100 : n), ct.ptr, s->types_text);
            return vie_send_problem(c, 415, detail);
        }
    }
    if (s->json) {
        json_error e;
        if (!json_check(body.ptr, body.len, &e)) {
            snprintf(detail, sizeof detail, "the body is not valid JSON: %s at byte %zu", e.msg,
                     e.offset);
            return vie_send_problem(c, 400, detail);
        }
    }
    return VIE_NEXT;
}

/* ------------------------------------------------------------------ */
/* Options                                                             */

void vie_validate_opts_init(vie_validate_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
}

/* Why o is refused, or NULL; *opt names the option. */
static const char *check_opts(const vie_validate_opts *o, const char **opt, const char **item)
{
    *item = NULL;
    *opt = "require_headers";
    for (const char *const *p = o->require_headers; p && *p; p++)
        if (!is_token(*p, strlen(*p))) return *item = *p, "is not a header name (a token)";
    *opt = "require_query";
    for (const char *const *p = o->require_query; p && *p; p++) {
        if (!**p) return *item = *p, "is empty";
        for (const char *q = *p; *q; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f || *q == '&' || *q == '=' || *q == '#')
                return *item = *p, "is not a query parameter name";
    }
    *opt = "content_types";
    for (const char *const *p = o->content_types; p && *p; p++)
        if (!is_media_range(*p))
            return *item = *p, "is not a media type (\"type/subtype\" or \"type/*\")";
    *opt = "validate";
    if (!strv_len(o->require_headers) && !strv_len(o->require_query) &&
        !strv_len(o->content_types) && !o->json_body)
        return "nothing to check: give require_headers, require_query, content_types or "
               "json_body";
    return NULL;
}

int vie_use_validate(vie_app *app, const vie_layer_opts *lo, const vie_validate_opts *o)
{
    const char *name = mw_name(lo, "validate");
    if (!app || !o) {
        LOG_ERROR("validate \"%s\" refused: %s", name,
                  app ? "the options are NULL" : "the app is NULL");
        return VIE_EINVAL;
    }
    const char *opt, *item, *why;
    if ((why = check_opts(o, &opt, &item))) {
        if (item)
            LOG_ERROR("validate \"%s\" refused: option %s: \"%s\" %s", name, opt, item, why);
        else
            LOG_ERROR("validate \"%s\" refused: %s", name, why);
        return VIE_EINVAL;
    }
    if (app->frozen) return app_refuse_frozen(app, "vie_use_validate", name);

    vstate *s = calloc(1, sizeof *s);
    if (!s) return VIE_ENOMEM;
    bool ok = true;
    s->headers = strv_dup(o->require_headers, false, &ok);
    s->query = strv_dup(o->require_query, false, &ok);
    s->types = strv_dup(o->content_types, true, &ok);
    s->json = o->json_body;
    if (ok && s->types) {
        size_t len = 1;
        for (char **p = s->types; *p; p++)
            len += strlen(*p) + 2;
        if ((s->types_text = malloc(len))) {
            s->types_text[0] = 0;
            for (char **p = s->types; *p; p++) {
                if (p != s->types) strcat(s->types_text, ", ");
                strcat(s->types_text, *p);
            }
        } else
            ok = false;
    }
    if (!ok) {
        v_free(s);
        return VIE_ENOMEM;
    }
    static const vie_middleware base = {
        .name = "validate", .phase = VIE_APP, .before = v_before, .free_state = v_free};
    return mw_register(app, lo, &base, s);
}

int mw_validate_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    vie_validate_opts o;
    vie_validate_opts_init(&o);
    cfg_get_strv(p, "require_headers", &o.require_headers);
    cfg_get_strv(p, "require_query", &o.require_query);
    cfg_get_strv(p, "content_types", &o.content_types);
    cfg_get_bool(p, "json_body", &o.json_body, false);
    if (cfg_params_finish(p)) return VIE_EINVAL;
    const char *opt, *item, *why;
    if ((why = check_opts(&o, &opt, &item))) {
        if (item)
            cfg_error(p, opt, "\"%s\" %s", item, why);
        else
            cfg_error(p, NULL, "%s", why);
        return VIE_EINVAL;
    }
    int rc = vie_use_validate(app, lo, &o);
    if (rc != VIE_OK)
        cfg_error(p, NULL, "cannot add validate \"%s\": %s", mw_name(lo, "validate"),
                  vie_strerror(rc));
    return rc;
}
