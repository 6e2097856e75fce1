/* From the YAML tree to the app: options, layers, groups, routes. The
 * readers of cfg.h are the schema: a key nobody reads is an error with a
 * "did you mean", and every error points at the value at fault. */
#include "config/build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mw/mw.h"
#include "server/server.h"

#define MS_DAY (24u * 3600u * 1000u)

/* ------------------------------------------------------------------ */
/* server:                                                             */

static int read_limits(cfg_params *srv, vie_options *o)
{
    cfg_params p;
    cfg_params_sub(srv, "limits", &p);
    uint64_t v;
    cfg_get_u32(&p, "max_connections", &o->max_connections, 1, 1000000, o->max_connections);
    if (cfg_get_bytes(&p, "max_request_line", &v, 64, 1u << 20, o->max_request_line))
        o->max_request_line = (uint32_t)v;
    if (cfg_get_bytes(&p, "max_header_bytes", &v, 256, 1u << 20, o->max_header_bytes))
        o->max_header_bytes = (uint32_t)v;
    cfg_get_u32(&p, "max_headers", &o->max_headers, 1, 10000, o->max_headers);
    cfg_get_bytes(&p, "max_body", &o->max_body, 1, 1ull << 40, o->max_body);
    cfg_get_u32(&p, "max_keepalive_requests", &o->max_keepalive_requests, 0, UINT32_MAX,
                o->max_keepalive_requests);
    return cfg_params_finish(&p);
}

static int read_timeouts(cfg_params *srv, vie_options *o)
{
    cfg_params p;
    cfg_params_sub(srv, "timeouts", &p);
    cfg_get_ms(&p, "request", &o->request_timeout_ms, 0, MS_DAY, o->request_timeout_ms);
    cfg_get_ms(&p, "keepalive", &o->keepalive_timeout_ms, 1, MS_DAY, o->keepalive_timeout_ms);
    cfg_get_ms(&p, "header", &o->header_timeout_ms, 1, MS_DAY, o->header_timeout_ms);
    cfg_get_ms(&p, "body", &o->body_timeout_ms, 1, MS_DAY, o->body_timeout_ms);
    cfg_get_ms(&p, "write", &o->write_timeout_ms, 1, MS_DAY, o->write_timeout_ms);
    cfg_get_ms(&p, "async", &o->async_timeout_ms, 1, MS_DAY, o->async_timeout_ms);
    cfg_get_ms(&p, "drain", &o->drain_timeout_ms, 1, MS_DAY, o->drain_timeout_ms);
    cfg_get_ms(&p, "watchdog", &o->watchdog_ms, 1, MS_DAY, o->watchdog_ms);
    cfg_get_ms(&p, "restart_backoff_max", &o->restart_backoff_max_ms, 1, MS_DAY,
               o->restart_backoff_max_ms);
    return cfg_params_finish(&p);
}

int config_read_server(cfg_ctx *cx, vie_options *o, int *log_level)
{
    if (!cx->root) return 1;
    cfg_params p;
    cfg_params_init(&p, cx, cfg_member(cx->root, "server"), "server");
    struct sockaddr_storage ss;
    if (cfg_get_str(&p, "listen", &o->listen, o->listen) && server_parse_listen(o->listen, &ss))
        cfg_error(&p, "listen",
                  "expected HOST:PORT (127.0.0.1:8080, [::1]:8080, port 0 to 65535), got \"%s\"",
                  o->listen);
    const cfg_node *w = cfg_get_node(&p, "workers");
    if (w && w->kind == CFG_SCALAR && !strcmp(w->text, "auto")) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        o->workers = cores > 0 ? (int)cores : 1;
    } else if (w) {
        cfg_get_int(&p, "workers", &o->workers, 0, 256, o->workers);
    }
    static const char *const crash_modes[] = {"recover", "exit", NULL};
    int mode = (int)o->on_crash;
    cfg_get_enum(&p, "on_crash", &mode, crash_modes, mode);
    o->on_crash = (vie_on_crash)mode;
    cfg_get_bool(&p, "debug", &o->debug, o->debug);
    cfg_get_bool(&p, "debug_endpoints", &o->debug_endpoints, o->debug_endpoints || o->debug);
    cfg_get_int(&p, "backlog", &o->backlog, 1, 65535, o->backlog);
    /* Applied by the caller once the whole config is accepted: a config
     * refused on reload must not change the running server's logging. */
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    cfg_get_enum(&p, "log_level", log_level, levels, *log_level);
    int errors = read_limits(&p, o) + read_timeouts(&p, o);
    return errors + cfg_params_finish(&p);
}

/* ------------------------------------------------------------------ */
/* middleware:                                                         */

typedef struct instance {
    const cfg_node *node;
    const char *name;
    const mw_type *type;
    vie_layer_opts lo;
    cfg_params p;          /* left open: the type's from_yaml reads the rest */
    const char *placed_in; /* "pipeline", "group \"api\"", "route GET /x" */
    const cfg_mark *placed_mark;
} instance;

typedef struct builder {
    cfg_ctx *cx;
    vie_app *app;
    config_resources *res;
    instance *inst;
    size_t n_inst;
    const char **names; /* instance names, NULL-terminated: did-you-mean */
    struct group_ref {
        const char *name;
        vie_group *g;
    } * groups;
    size_t n_groups;
    const char **group_names;
    vie_app *scratch; /* validates the instances of a group or route that failed */
} builder;

static const char *fmt(cfg_ctx *cx, const char *f, const char *a, const char *b)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, f, a, b ? b : "");
    return cfg_strdup(cx, tmp);
}

static instance *find_instance(builder *b, const char *name)
{
    for (size_t i = 0; i < b->n_inst; i++)
        if (b->inst[i].name && !strcmp(b->inst[i].name, name)) return &b->inst[i];
    return NULL;
}

/* A name in requires / runs_before / runs_after: an instance, or a family
 * ("auth" for "auth.api"). */
static bool known_layer_name(builder *b, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < b->n_inst; i++) {
        const char *n = b->inst[i].name;
        if (!n) continue;
        if (!strcmp(n, name) || (!strncmp(n, name, len) && n[len] == '.')) return true;
    }
    return false;
}

static void check_layer_names(builder *b, cfg_params *p, const char *key, const char *const *v)
{
    for (; v && *v; v++) {
        if (known_layer_name(b, *v)) continue;
        const char *close = cfg_closest(*v, b->names, b->n_inst);
        cfg_error(p, key, "no middleware is called \"%s\"%s%s%s", *v,
                  close ? "; did you mean \"" : "", close ? close : "", close ? "\"?" : "");
    }
}

static int read_instances(builder *b)
{
    cfg_ctx *cx = b->cx;
    const cfg_node *seq = cfg_member(cx->root, "middleware");
    if (!seq || seq->kind == CFG_NULL) return 0;
    if (seq->kind != CFG_SEQ) {
        cfg_error_at(cx, &seq->mark, "middleware: expected a list of instances, got %s",
                     cfg_kind_name(seq));
        return 1;
    }
    size_t n_types;
    const mw_type *types = mw_types(&n_types);
    const char **type_names = cfg_alloc(cx, (n_types + 1) * sizeof *type_names);
    b->inst = cfg_alloc(cx, (seq->n + 1) * sizeof *b->inst);
    b->names = cfg_alloc(cx, (seq->n + 1) * sizeof *b->names);
    if (!type_names || !b->inst || !b->names) return 1;
    memset(b->inst, 0, (seq->n + 1) * sizeof *b->inst);
    for (size_t i = 0; i < n_types; i++)
        type_names[i] = types[i].name;
    type_names[n_types] = NULL;
    static const char *const phases[] = {"observe", "guard", "app", NULL};
    int errors = 0;
    for (const cfg_node *item = seq->first; item; item = item->next) {
        instance *in = &b->inst[b->n_inst++];
        in->node = item;
        cfg_params *p = &in->p;
        cfg_params_init(p, cx, item, "middleware");
        if (item->kind != CFG_MAP) {
            errors++;
            continue;
        }
        int t = -1;
        const char *type = NULL;
        if (cfg_require(p, "type") && cfg_get_enum(p, "type", &t, type_names, -1))
            type = type_names[t];
        in->type = t >= 0 ? &types[t] : NULL;
        cfg_get_str(p, "name", &in->name, type);
        p->what = fmt(cx, "middleware \"%s\"%s", in->name ? in->name : "?",
                      type && in->name && strcmp(type, in->name) ? fmt(cx, " (type %s)", type, NULL)
                                                                 : "");
        for (size_t j = 0; in->name && j + 1 < b->n_inst; j++) {
            if (b->inst[j].name && !strcmp(b->inst[j].name, in->name)) {
                const cfg_node *first = b->inst[j].node;
                cfg_error(p, "name",
                          "the name \"%s\" is already taken by the instance at %s:%u:%u; give "
                          "each instance its own name",
                          in->name, first->mark.file, first->mark.line, first->mark.col);
            }
        }
        int ph = -1;
        if (cfg_get_enum(p, "phase", &ph, phases, -1)) {
            in->lo.phase_set = true;
            in->lo.phase = (vie_phase)ph;
        }
        cfg_get_strv(p, "requires", &in->lo.requires);
        cfg_get_strv(p, "runs_before", &in->lo.runs_before);
        cfg_get_strv(p, "runs_after", &in->lo.runs_after);
        in->lo.name = in->name;
        b->names[b->n_inst - 1] = in->name;
        errors += p->errors;
    }
    b->names[b->n_inst] = NULL;
    for (size_t i = 0; i < b->n_inst; i++) {
        instance *in = &b->inst[i];
        if (!in->type) continue;
        check_layer_names(b, &in->p, "requires", in->lo.requires);
        check_layer_names(b, &in->p, "runs_before", in->lo.runs_before);
        check_layer_names(b, &in->p, "runs_after", in->lo.runs_after);
    }
    return errors;
}

/* Make the layer of one instance in one place; an instance is placed
 * once (a second place would be a second layer with the same name). */
static void place(builder *b, instance *in, vie_group *g, const char *where, const cfg_mark *m)
{
    if (in->placed_in) {
        cfg_error_at(b->cx, m,
                     "middleware \"%s\" is already used in %s (%s:%u:%u); an instance is one "
                     "layer: declare another instance with its own name to use it here too",
                     in->name, in->placed_in, in->placed_mark->file, in->placed_mark->line,
                     in->placed_mark->col);
        return;
    }
    in->placed_in = where;
    in->placed_mark = m;
    if (!in->type) return; /* its error is recorded already */
    if (!in->type->is_layer && g) {
        cfg_error_at(b->cx, m,
                     "middleware \"%s\" (type %s) is not a layer and applies to the whole app: "
                     "list it in pipeline",
                     in->name, in->type->name);
        return;
    }
    if (in->p.errors) return; /* its common keys were wrong: reported already */
    vie_layer_opts lo = in->lo;
    lo.group = g;
    size_t before = b->cx->errs.n; /* nested readers count their own errors */
    int rc = in->type->from_yaml(b->app, &lo, &in->p);
    if (rc != VIE_OK && b->cx->errs.n == before)
        cfg_error(&in->p, NULL, "refused: %s (the log line above says why)", vie_strerror(rc));
}

/* A list of instance names (one name or a list), each placed on g. */
static void place_list(builder *b, const cfg_node *list, vie_group *g, const char *where)
{
    if (!list || list->kind == CFG_NULL) return;
    const cfg_node *one = list->kind == CFG_SCALAR ? list : NULL;
    if (!one && list->kind != CFG_SEQ) {
        cfg_error_at(b->cx, &list->mark, "%s: expected a list of middleware names, got %s", where,
                     cfg_kind_name(list));
        return;
    }
    for (const cfg_node *it = one ? one : list->first; it; it = one ? NULL : it->next) {
        if (it->kind != CFG_SCALAR) {
            cfg_error_at(b->cx, &it->mark, "%s: expected a middleware name, got %s", where,
                         cfg_kind_name(it));
            continue;
        }
        instance *in = find_instance(b, it->text);
        if (!in) {
            const char *close = cfg_closest(it->text, b->names, b->n_inst);
            cfg_error_at(b->cx, &it->mark,
                         "%s: no middleware instance is called \"%s\"%s%s%s (declare it under "
                         "middleware:)",
                         where, it->text, close ? "; did you mean \"" : "", close ? close : "",
                         close ? "\"?" : "");
            continue;
        }
        place(b, in, g, where, &it->mark);
    }
}

/* The middleware of a group or route that is refused still gets its
 * keys checked (on a scratch app), so one error does not hide another or
 * pass its instances off as unused. */
static void place_list_scratch(builder *b, const cfg_node *list, const char *where)
{
    if (!list || list->kind == CFG_NULL) return;
    if (!b->scratch) b->scratch = vie_app_new(NULL);
    if (!b->scratch) return;
    vie_app *real = b->app;
    b->app = b->scratch;
    place_list(b, list, NULL, where);
    b->app = real;
}

/* ------------------------------------------------------------------ */
/* groups:                                                             */

static vie_group *find_group(builder *b, const char *name)
{
    for (size_t i = 0; i < b->n_groups; i++)
        if (!strcmp(b->groups[i].name, name)) return b->groups[i].g;
    return NULL;
}

static int read_groups(builder *b)
{
    cfg_ctx *cx = b->cx;
    const cfg_node *seq = cfg_member(cx->root, "groups");
    if (!seq || seq->kind == CFG_NULL) return 0;
    if (seq->kind != CFG_SEQ) {
        cfg_error_at(cx, &seq->mark, "groups: expected a list of groups, got %s",
                     cfg_kind_name(seq));
        return 1;
    }
    b->groups = cfg_alloc(cx, (seq->n + 1) * sizeof *b->groups);
    b->group_names = cfg_alloc(cx, (seq->n + 1) * sizeof *b->group_names);
    if (!b->groups || !b->group_names) return 1;
    int errors = 0;
    for (const cfg_node *item = seq->first; item; item = item->next) {
        cfg_params p;
        cfg_params_init(&p, cx, item, "group");
        const char *name = NULL, *prefix = "", *parent = NULL;
        cfg_require(&p, "name");
        cfg_get_str(&p, "name", &name, NULL);
        if (name) p.what = fmt(cx, "group \"%s\"", name, NULL);
        cfg_get_str(&p, "prefix", &prefix, "");
        cfg_get_str(&p, "parent", &parent, NULL);
        const cfg_node *mw = cfg_get_node(&p, "middleware");
        size_t len = strlen(prefix);
        if (len && (prefix[0] != '/' || prefix[len - 1] == '/'))
            cfg_error(&p, "prefix",
                      "expected \"\" or a path that starts with '/' and does not end with one "
                      "(\"/api\"), got \"%s\"",
                      prefix);
        if (name && find_group(b, name))
            cfg_error(&p, "name", "a group called \"%s\" is declared already", name);
        vie_group *pg = NULL;
        if (parent && !(pg = find_group(b, parent))) {
            const char *close = cfg_closest(parent, b->group_names, b->n_groups);
            cfg_error(&p, "parent", "no group \"%s\" is declared before this one%s%s%s", parent,
                      close ? "; did you mean \"" : "", close ? close : "", close ? "\"?" : "");
        }
        if (cfg_params_finish(&p) || !name) {
            place_list_scratch(b, mw, p.what);
            errors++;
            continue;
        }
        vie_group *g = NULL;
        if (vie_group_new(b->app, pg, prefix, &g) != VIE_OK) {
            cfg_error_at(cx, &item->mark, "group \"%s\": refused (the log line above says why)",
                         name);
            errors++;
            continue;
        }
        b->groups[b->n_groups] = (struct group_ref){name, g};
        b->group_names[b->n_groups++] = name;
        b->group_names[b->n_groups] = NULL;
        place_list(b, mw, g, fmt(cx, "group \"%s\"", name, NULL));
    }
    return errors;
}

/* ------------------------------------------------------------------ */
/* routes: actions                                                     */

typedef struct respond {
    int status;
    const char *content_type;
    const char *body;
    size_t len;
    const char **names, **values;
    size_t n_headers;
} respond;

static vie_status respond_handler(vie_ctx *c, void *arg)
{
    const respond *r = arg;
    for (size_t i = 0; i < r->n_headers; i++)
        vie_header_add(c, r->names[i], r->values[i]);
    return vie_send(c, r->status, r->content_type, r->body, r->len);
}

static bool header_name_ok(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (!strchr("!#$%&'*+-.^_`|~", *s) && !(*s >= '0' && *s <= '9') &&
            !((*s | 0x20) >= 'a' && (*s | 0x20) <= 'z'))
            return false;
    return true;
}

static respond *read_respond(builder *b, cfg_params *route, const char *label)
{
    cfg_ctx *cx = b->cx;
    cfg_params p;
    cfg_params_sub(route, "respond", &p);
    p.what = fmt(cx, "route %s: respond", label, NULL);
    respond *r = cfg_alloc(cx, sizeof *r);
    if (!r) return NULL;
    memset(r, 0, sizeof *r);
    /* Not 1xx: an interim answer as the final one would put every later
     * answer on the connection out of step. */
    cfg_get_int(&p, "status", &r->status, 200, 599, 200);
    cfg_get_str(&p, "body", &r->body, "");
    r->len = strlen(r->body);
    cfg_get_str(&p, "content_type", &r->content_type, r->len ? "text/plain; charset=utf-8" : NULL);
    const cfg_node *h = cfg_get_node(&p, "headers");
    if (h && h->kind != CFG_NULL) {
        if (h->kind != CFG_MAP) {
            cfg_error(&p, "headers", "expected a map of header names to values, got %s",
                      cfg_kind_name(h));
        } else {
            r->names = cfg_alloc(cx, (h->n + 1) * sizeof *r->names);
            r->values = cfg_alloc(cx, (h->n + 1) * sizeof *r->values);
            for (const cfg_node *m = h->first; m && r->names && r->values; m = m->next) {
                static const char *const reserved[] = {"content-length", "transfer-encoding",
                                                       "connection", "date", "content-type"};
                bool bad = m->kind != CFG_SCALAR;
                if (bad)
                    cfg_error_at(cx, &m->mark, "%s: header %s: expected a string, got %s", p.what,
                                 m->key, cfg_kind_name(m));
                else if (!header_name_ok(m->key))
                    cfg_error_at(cx, &m->key_mark, "%s: \"%s\" is not a valid header name", p.what,
                                 m->key);
                else if (strpbrk(m->text, "\r\n"))
                    cfg_error_at(cx, &m->mark, "%s: header %s: a value holds no CR or LF", p.what,
                                 m->key);
                else
                    for (size_t k = 0; k < sizeof reserved / sizeof *reserved; k++)
                        if (!strcasecmp(m->key, reserved[k]))
                            cfg_error_at(cx, &m->key_mark, "%s: header %s is set by Vie%s", p.what,
                                         m->key, k == 4 ? " (use content_type)" : "");
                r->names[r->n_headers] = m->key;
                r->values[r->n_headers++] = m->kind == CFG_SCALAR ? m->text : "";
            }
        }
    }
    if (cfg_params_finish(&p)) return NULL;
    if ((r->status == 204 || r->status == 304) && r->len) {
        cfg_error(&p, "body", "a %d response has no body; remove body", r->status);
        return NULL;
    }
    return r;
}

static vie_static *read_static(builder *b, cfg_params *route, const char *label, const char *path)
{
    cfg_ctx *cx = b->cx;
    cfg_params p;
    cfg_params_sub(route, "static", &p);
    p.what = fmt(cx, "route %s: static", label, NULL);
    vie_static_opts o;
    vie_static_opts_init(&o);
    cfg_require(&p, "root");
    cfg_get_str(&p, "root", &o.root, NULL);
    cfg_get_str(&p, "index", &o.index, o.index);
    cfg_get_str(&p, "cache_control", &o.cache_control, o.cache_control);
    cfg_get_bool(&p, "etag", &o.etag, o.etag);
    const char *star = strrchr(path, '/');
    if (!star || star[1] != '*' || !star[2]) {
        cfg_error(route, "path",
                  "a static route's path ends in a catch-all segment that names the file, "
                  "e.g. /assets/*path; got \"%s\"",
                  path);
        return NULL;
    }
    o.param = star + 2;
    if (cfg_params_finish(&p)) return NULL;
    vie_static *s = NULL;
    if (vie_static_new(&o, &s) != VIE_OK) {
        cfg_error(&p, "root", "cannot serve files from \"%s\" (the log line above says why)",
                  o.root);
        return NULL;
    }
    config_resources *res = b->res;
    if (res->n_statics == res->cap_statics) {
        size_t cap = res->cap_statics ? res->cap_statics * 2 : 4;
        vie_static **v = realloc(res->statics, cap * sizeof *v);
        if (!v) {
            vie_static_free(s);
            return NULL;
        }
        res->statics = v;
        res->cap_statics = cap;
    }
    res->statics[res->n_statics++] = s;
    return s;
}

/* ------------------------------------------------------------------ */
/* routes:                                                             */

static bool method_ok(const char *m)
{
    if (!*m || strlen(m) > 32) return false;
    for (; *m; m++)
        if (*m < 'A' || *m > 'Z') return false;
    return true;
}

static void read_route(builder *b, const cfg_node *item)
{
    cfg_ctx *cx = b->cx;
    cfg_params p;
    cfg_params_init(&p, cx, item, "route");
    if (item->kind != CFG_MAP) return;
    const char *path = NULL, *group = NULL, *method = NULL;
    const char *const *methods = NULL;
    cfg_require(&p, "path");
    cfg_get_str(&p, "path", &path, NULL);
    bool has_method = cfg_get_str(&p, "method", &method, NULL);
    bool has_methods = cfg_get_strv(&p, "methods", &methods);
    static const char *const get_only[] = {"GET", NULL};
    if (has_method && has_methods) cfg_error(&p, "methods", "give method or methods, not both");
    if (has_methods && !methods[0]) {
        cfg_error(&p, "methods", "expected at least one method");
        methods = NULL;
    }
    if (!has_methods) {
        const char **one = cfg_alloc(cx, 2 * sizeof *one);
        if (one && has_method) {
            one[0] = method;
            one[1] = NULL;
            methods = one;
        } else {
            methods = get_only;
        }
    }
    for (const char *const *m = methods; m && *m; m++)
        if (!method_ok(*m))
            cfg_error(&p, has_methods ? "methods" : "method",
                      "expected an HTTP method in capitals (GET, POST, PURGE...), got \"%s\"", *m);
    char label[300];
    snprintf(label, sizeof label, "%s %s", methods && methods[0] ? methods[0] : "GET",
             path ? path : "?");
    p.what = fmt(cx, "route %s", label, NULL);
    cfg_get_str(&p, "group", &group, NULL);
    vie_group *g = NULL;
    if (group && !(g = find_group(b, group))) {
        const char *close = cfg_closest(group, b->group_names, b->n_groups);
        cfg_error(&p, "group", "no group is called \"%s\"%s%s%s", group,
                  close ? "; did you mean \"" : "", close ? close : "", close ? "\"?" : "");
    }
    const cfg_node *mw = cfg_get_node(&p, "middleware");
    vie_route_opts ro = {0};
    cfg_get_strv(&p, "requires", &ro.requires);
    check_layer_names(b, &p, "requires", ro.requires);
    cfg_get_ms(&p, "timeout", &ro.timeout_ms, 1, MS_DAY, 0);
    bool has_respond = cfg_has(&p, "respond"), has_static = cfg_has(&p, "static");
    if (cfg_get_node(&p, "proxy"))
        cfg_error(&p, "proxy", "proxy routes are not supported yet: use respond or static");
    else if (has_respond + has_static != 1)
        cfg_error(&p, NULL, "a route needs exactly one action: respond or static");
    vie_handler_fn fn = NULL;
    void *arg = NULL;
    if (path && has_respond && !has_static) {
        fn = respond_handler;
        arg = read_respond(b, &p, label);
    } else if (path && has_static && !has_respond) {
        fn = vie_static_handler;
        arg = read_static(b, &p, label, path);
    }
    if (cfg_params_finish(&p) || !arg || !path) {
        place_list_scratch(b, mw, p.what);
        return;
    }
    /* Layers of this route alone live in a group of their own. */
    if (mw && mw->kind != CFG_NULL) {
        if (vie_group_new(b->app, g, "", &g) != VIE_OK) {
            cfg_error_at(cx, &item->mark, "%s: refused (the log line above says why)", p.what);
            return;
        }
        place_list(b, mw, g, p.what);
    }
    ro.group = g;
    for (const char *const *m = methods; m && *m; m++) {
        int rc = vie_route_with(b->app, *m, path, fn, arg, &ro);
        if (rc != VIE_OK)
            cfg_error(&p, "path", "%s %s refused: %s (the log line above says why)", *m, path,
                      vie_strerror(rc));
    }
}

static int read_routes(builder *b)
{
    cfg_ctx *cx = b->cx;
    const cfg_node *seq = cfg_member(cx->root, "routes");
    if (!seq || seq->kind == CFG_NULL || (seq->kind == CFG_SEQ && !seq->first)) {
        /* An empty file would answer 404 to everything: most likely one
         * caught half-written, which a reload must not swap in. */
        cfg_error_at(cx, seq ? &seq->mark : &cx->root->mark,
                     "no routes: a config declares at least one (routes: [{path: /, respond: "
                     "{body: hi}}])");
        return 1;
    }
    if (seq->kind != CFG_SEQ) {
        cfg_error_at(cx, &seq->mark, "routes: expected a list of routes, got %s",
                     cfg_kind_name(seq));
        return 1;
    }
    for (const cfg_node *item = seq->first; item; item = item->next)
        read_route(b, item);
    return 0;
}

int config_build(cfg_ctx *cx, vie_app *app, config_resources *res)
{
    if (!cx->root) return 1;
    size_t before = cx->errs.n;
    cfg_params top;
    cfg_params_init(&top, cx, cx->root, "the config");
    cfg_get_node(&top, "server"); /* config_read_server's */
    cfg_get_node(&top, "middleware");
    const cfg_node *pipeline = cfg_get_node(&top, "pipeline");
    cfg_get_node(&top, "groups");
    cfg_get_node(&top, "routes");
    cfg_params_finish(&top);

    builder b = {.cx = cx, .app = app, .res = res};
    read_instances(&b);
    place_list(&b, pipeline, NULL, "pipeline");
    read_groups(&b);
    read_routes(&b);
    for (size_t i = 0; i < b.n_inst; i++) {
        instance *in = &b.inst[i];
        if (in->placed_in || in->node->kind != CFG_MAP || in->p.errors) continue;
        cfg_error_at(cx, &in->node->mark,
                     "middleware \"%s\" is declared but used nowhere: list it in pipeline, in a "
                     "group's or in a route's middleware (or remove it)",
                     in->name ? in->name : "?");
    }
    if (b.scratch) vie_app_free(b.scratch);
    return (int)(cx->errs.n - before);
}

void config_resources_free(config_resources *res)
{
    for (size_t i = 0; i < res->n_statics; i++)
        vie_static_free(res->statics[i]);
    free(res->statics);
    memset(res, 0, sizeof *res);
}
