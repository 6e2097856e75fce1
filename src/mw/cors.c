/* cors: Cross-Origin Resource Sharing (the Fetch standard's CORS
 * protocol). Preflights (OPTIONS with Origin and
 * Access-Control-Request-Method) are answered here: 204 with the allowed
 * origin, methods, headers and max age, or 403 naming what was refused.
 * Other requests from an allowed origin get Access-Control-Allow-Origin
 * (and credentials and exposed headers) before the handler writes; from
 * any other origin they get no CORS header, and the browser blocks the
 * answer. Every response carries "Vary: Origin" because whether it has
 * CORS headers depends on the Origin, so a cache must not share it
 * across origins. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/cfg.h"
#include "core/app.h"
#include "core/log.h"
#include "mw/mw.h"

typedef struct cors_state {
    char **origins; /* lowercased, NULL-terminated; NULL when any */
    bool any;       /* "*" */
    char **methods; /* NULL-terminated */
    char **headers; /* allowed request headers, NULL-terminated */
    bool credentials;
    char *methods_v; /* "GET, HEAD, POST" */
    char *headers_v; /* NULL when none */
    char *expose_v;  /* NULL when none */
    char max_age_v[16];
} cors_state;

static void strv_free(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

static void cors_free(void *arg)
{
    cors_state *st = arg;
    if (!st) return;
    strv_free(st->origins);
    strv_free(st->methods);
    strv_free(st->headers);
    free(st->methods_v);
    free(st->headers_v);
    free(st->expose_v);
    free(st);
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool is_token_n(const char *s, size_t n)
{
    if (!n) return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i])) return false;
    return true;
}

static size_t strv_len(const char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

/* A copy of v (NULL-terminated), each string lowercased when lower. */
static char **strv_copy(const char *const *v, bool lower)
{
    size_t n = strv_len(v);
    char **out = calloc(n + 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++) {
        out[i] = strdup(v[i]);
        if (!out[i]) {
            strv_free(out);
            return NULL;
        }
        for (char *p = out[i]; lower && *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    }
    return out;
}

/* "a, b, c", or NULL (and *oom set) when out of memory. */
static char *join(const char *const *v, bool *oom)
{
    size_t n = 0;
    for (size_t i = 0; v[i]; i++)
        n += strlen(v[i]) + 2;
    char *s = malloc(n + 1), *p = s;
    if (!s) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; v[i]; i++) {
        if (i) {
            memcpy(p, ", ", 2);
            p += 2;
        }
        size_t l = strlen(v[i]);
        memcpy(p, v[i], l);
        p += l;
    }
    *p = '\0';
    return s;
}

/* scheme "://" host [":" port], nothing after: what a browser sends as
 * Origin. A trailing slash or a path would never match, so it is refused
 * rather than silently ignored. */
static const char *origin_problem(const char *o)
{
    if (!strcmp(o, "null")) return NULL;
    const char *p = o;
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) return "it has no scheme";
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '+' || *p == '-' || *p == '.')
        p++;
    if (strncmp(p, "://", 3) != 0) return "it has no scheme (\"https://...\")";
    p += 3;
    const char *host = p;
    for (; *p && *p != ':'; p++) {
        if (*p == '*') return "wildcards are not supported: list each origin, or use \"*\" alone";
        if (*p == '/' || *p == '?' || *p == '#')
            return "an origin has no path, query or trailing slash";
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '@')
            return "the host holds a space, a control, a non-ASCII byte or '@'";
    }
    if (p == host) return "the host is empty";
    if (*p == ':') {
        const char *port = ++p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == port || *p) return "the port must be digits, with nothing after it";
    }
    return NULL;
}

static int cors_build(const vie_cors_opts *o, cors_state **out, mw_why *w)
{
    *out = NULL;
    size_t n_origins = strv_len(o->allow_origins);
    if (!n_origins)
        return mw_refuse(w, "allow_origins",
                         "allow_origins is required: the origins allowed (\"https://app.example\") "
                         "or \"*\"");
    bool any = false;
    for (size_t i = 0; i < n_origins; i++) {
        const char *s = o->allow_origins[i];
        if (!strcmp(s, "*")) {
            any = true;
            continue;
        }
        const char *why = origin_problem(s);
        if (why) return mw_refuse(w, "allow_origins", "allow_origins: \"%s\": %s", s, why);
    }
    if (any && n_origins > 1)
        return mw_refuse(
            w, "allow_origins",
            "allow_origins: \"*\" allows every origin: list it alone, or list origins");
    if (any && o->allow_credentials)
        return mw_refuse(w, "allow_credentials",
                         "allow_credentials with allow_origins \"*\" is refused: browsers ignore "
                         "credentials for \"*\"; list the origins instead");
    /* Sandboxed iframes and data: pages of any site send "Origin: null":
     * with credentials that would open the API to every page. */
    for (size_t i = 0; o->allow_credentials && o->allow_origins[i]; i++)
        if (!strcasecmp(o->allow_origins[i], "null"))
            return mw_refuse(w, "allow_credentials",
                             "allow_credentials with the origin \"null\" is refused: any site "
                             "can send Origin: null (sandboxed frames, data: URLs)");
    static const char *const def_methods[] = {"GET", "HEAD", "POST", NULL};
    const char *const *methods = o->allow_methods ? o->allow_methods : def_methods;
    if (!methods[0]) return mw_refuse(w, "allow_methods", "allow_methods is empty");
    for (size_t i = 0; methods[i]; i++)
        if (!strcmp(methods[i], "*") || !is_token_n(methods[i], strlen(methods[i])))
            return mw_refuse(w, "allow_methods",
                             "allow_methods: \"%s\" is not a method (list each method; \"*\" is "
                             "not supported)",
                             methods[i]);
    for (size_t i = 0; o->allow_headers && o->allow_headers[i]; i++)
        if (!strcmp(o->allow_headers[i], "*") ||
            !is_token_n(o->allow_headers[i], strlen(o->allow_headers[i])))
            return mw_refuse(w, "allow_headers",
                             "allow_headers: \"%s\" is not a header name (list each header; \"*\" "
                             "is not supported)",
                             o->allow_headers[i]);
    for (size_t i = 0; o->expose_headers && o->expose_headers[i]; i++)
        if (!is_token_n(o->expose_headers[i], strlen(o->expose_headers[i])))
            return mw_refuse(w, "expose_headers", "expose_headers: \"%s\" is not a header name",
                             o->expose_headers[i]);
    if (o->max_age_s > 86400)
        return mw_refuse(w, "max_age", "max_age %u s is above 86400 (one day, what browsers allow)",
                         o->max_age_s);

    cors_state *st = calloc(1, sizeof *st);
    if (!st) return mw_refuse(w, NULL, "out of memory");
    bool oom = false;
    st->any = any;
    st->credentials = o->allow_credentials;
    if (!any) {
        /* Browsers send the scheme and host in lowercase. */
        st->origins = strv_copy(o->allow_origins, true);
        oom |= !st->origins;
    }
    st->methods = strv_copy(methods, false);
    oom |= !st->methods;
    st->headers = strv_copy(o->allow_headers, false);
    oom |= !st->headers;
    if (!oom) st->methods_v = join(methods, &oom);
    if (!oom && o->allow_headers && o->allow_headers[0])
        st->headers_v = join(o->allow_headers, &oom);
    if (!oom && o->expose_headers && o->expose_headers[0])
        st->expose_v = join(o->expose_headers, &oom);
    snprintf(st->max_age_v, sizeof st->max_age_v, "%u", o->max_age_s);
    if (oom) {
        cors_free(st);
        return mw_refuse(w, NULL, "out of memory");
    }
    *out = st;
    return VIE_OK;
}

/* ------------------------------------------------------------------ */
/* The hook                                                            */

/* The configured origin equal to origin, or NULL. */
static const char *find_origin(const cors_state *st, vie_str origin)
{
    for (char **p = st->origins; p && *p; p++)
        if (strlen(*p) == origin.len && !memcmp(*p, origin.ptr, origin.len)) return *p;
    return NULL;
}

static bool has_method(const cors_state *st, vie_str m)
{
    /* The CORS-safelisted methods need no permission (Fetch). */
    static const char *const safe[] = {"GET", "HEAD", "POST"};
    for (size_t i = 0; i < 3; i++)
        if (strlen(safe[i]) == m.len && !memcmp(safe[i], m.ptr, m.len)) return true;
    for (char **p = st->methods; *p; p++)
        if (strlen(*p) == m.len && !memcmp(*p, m.ptr, m.len)) return true;
    return false;
}

static bool has_header(const cors_state *st, const char *h, size_t n)
{
    for (char **p = st->headers; *p; p++)
        if (strlen(*p) == n && !strncasecmp(*p, h, n)) return true;
    return false;
}

static vie_status refuse_preflight(vie_ctx *c, const char *what, const char *v, size_t n)
{
    char detail[320];
    snprintf(detail, sizeof detail, "CORS preflight refused: %s \"%.*s\" is not allowed", what,
             (int)(n > 200 ? 200 : n), v);
    return vie_send_problem(c, 403, detail);
}

static vie_status preflight(vie_ctx *c, const cors_state *st, vie_str origin, vie_str method)
{
    vie_header_add(c, "Vary",
                   "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
    const char *allowed = st->any ? "*" : find_origin(st, origin);
    if (!allowed) return refuse_preflight(c, "origin", origin.ptr, origin.len);
    if (!is_token_n(method.ptr, method.len) || !has_method(st, method))
        return refuse_preflight(c, "method", method.ptr, method.len);
    vie_str req = vie_header(c, "Access-Control-Request-Headers");
    for (size_t i = 0; req.ptr && i < req.len;) {
        size_t j = i;
        while (j < req.len && req.ptr[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (req.ptr[a] == ' ' || req.ptr[a] == '\t'))
            a++;
        while (b > a && (req.ptr[b - 1] == ' ' || req.ptr[b - 1] == '\t'))
            b--;
        if (b > a && !has_header(st, req.ptr + a, b - a))
            return refuse_preflight(c, "header", req.ptr + a, b - a);
        i = j + 1;
    }
    vie_header_add(c, "Access-Control-Allow-Origin", allowed);
    if (st->credentials) vie_header_add(c, "Access-Control-Allow-Credentials", "true");
    vie_header_add(c, "Access-Control-Allow-Methods", st->methods_v);
    if (st->headers_v) vie_header_add(c, "Access-Control-Allow-Headers", st->headers_v);
    vie_header_add(c, "Access-Control-Max-Age", st->max_age_v);
    return vie_send(c, 204, NULL, NULL, 0);
}

static vie_status cors_before(vie_ctx *c, void *arg)
{
    const cors_state *st = arg;
    vie_str origin = vie_header(c, "Origin");
    vie_str m = vie_method(c);
    if (origin.ptr && m.len == 7 && !memcmp(m.ptr, "OPTIONS", 7)) {
        vie_str acrm = vie_header(c, "Access-Control-Request-Method");
        if (acrm.ptr) return preflight(c, st, origin, acrm);
    }
    vie_header_add(c, "Vary", "Origin");
    if (!origin.ptr) return VIE_NEXT;
    const char *allowed = st->any ? "*" : find_origin(st, origin);
    if (!allowed) return VIE_NEXT; /* no CORS headers: the browser keeps the answer from the page */
    vie_header_add(c, "Access-Control-Allow-Origin", allowed);
    if (st->credentials) vie_header_add(c, "Access-Control-Allow-Credentials", "true");
    if (st->expose_v) vie_header_add(c, "Access-Control-Expose-Headers", st->expose_v);
    return VIE_NEXT;
}

/* ------------------------------------------------------------------ */
/* Registration                                                        */

void vie_cors_opts_init(vie_cors_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->max_age_s = 600;
}

static int cors_use(vie_app *app, const vie_layer_opts *lo, const vie_cors_opts *o, mw_why *w)
{
    const char *name = mw_name(lo, "cors");
    if (app->frozen) return app_refuse_frozen(app, "vie_use_cors", name);
    cors_state *st;
    int rc = cors_build(o, &st, w);
    if (rc != VIE_OK) return rc;
    static const vie_middleware base = {
        .name = "cors",
        .phase = VIE_OBSERVE,
        .before = cors_before,
        .free_state = cors_free,
    };
    rc = mw_register(app, lo, &base, st);
    if (rc != VIE_OK)
        snprintf(w->msg, sizeof w->msg, "layer %s cannot be registered: %s", name,
                 vie_strerror(rc));
    return rc;
}

int vie_use_cors(vie_app *app, const vie_layer_opts *lo, const vie_cors_opts *o)
{
    if (!app || !o) {
        LOG_ERROR("cors: vie_use_cors refused: %s is NULL", !app ? "the app" : "the options");
        return VIE_EINVAL;
    }
    mw_why w = {0};
    int rc = cors_use(app, lo, o, &w);
    if (rc != VIE_OK && w.msg[0]) LOG_ERROR("cors %s: %s", mw_name(lo, "cors"), w.msg);
    return rc;
}

/* max_age: whole seconds as an integer (600), or a duration ("10m"). */
static void read_max_age(cfg_params *p, uint32_t *out)
{
    const cfg_node *n = cfg_get_node(p, "max_age");
    if (!n) return;
    if (n->kind == CFG_SCALAR && !n->quoted && n->text && *n->text &&
        strspn(n->text, "0123456789") == strlen(n->text)) {
        cfg_get_u32(p, "max_age", out, 0, 86400, *out);
        return;
    }
    uint32_t ms;
    if (!cfg_get_ms(p, "max_age", &ms, 0, 86400000u, *out * 1000u)) return;
    if (ms % 1000)
        cfg_error(p, "max_age", "expected whole seconds (600, \"10m\"), got %u ms", ms);
    else
        *out = ms / 1000;
}

int mw_cors_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    vie_cors_opts o;
    vie_cors_opts_init(&o);
    cfg_require(p, "allow_origins");
    cfg_get_strv(p, "allow_origins", &o.allow_origins);
    cfg_get_strv(p, "allow_methods", &o.allow_methods);
    cfg_get_strv(p, "allow_headers", &o.allow_headers);
    cfg_get_strv(p, "expose_headers", &o.expose_headers);
    cfg_get_bool(p, "allow_credentials", &o.allow_credentials, false);
    read_max_age(p, &o.max_age_s);
    if (cfg_params_finish(p)) return VIE_EINVAL;
    mw_why w = {0};
    int rc = cors_use(app, lo, &o, &w);
    if (rc != VIE_OK) {
        const char *key = w.key && cfg_has(p, w.key) ? w.key : NULL;
        cfg_error(p, key, "%s", w.msg[0] ? w.msg : vie_strerror(rc));
    }
    return rc;
}
