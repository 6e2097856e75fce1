/* security_headers: response headers that tell browsers to be careful
 * (HSTS, X-Frame-Options, X-Content-Type-Options, Referrer-Policy,
 * Content-Security-Policy, Permissions-Policy), added to every response
 * of the routes the layer covers. They are added in the before hook, so
 * they are on the response whoever answers after it (a later layer, the
 * handler, or the executor's own 504 or 500). A handler that adds one of
 * them again sends it twice. Values are validated and formatted once, at
 * registration. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/cfg.h"
#include "core/app.h"
#include "core/log.h"
#include "mw/mw.h"

#define SH_MAX     6
#define HSTS_MAX_S 315360000u /* ten years */

typedef struct sh_state {
    const char *names[SH_MAX];
    char *values[SH_MAX];
    size_t n;
} sh_state;

static void sh_free(void *arg)
{
    sh_state *st = arg;
    if (!st) return;
    for (size_t i = 0; i < st->n; i++)
        free(st->values[i]);
    free(st);
}

static vie_status sh_before(vie_ctx *c, void *arg)
{
    const sh_state *st = arg;
    for (size_t i = 0; i < st->n; i++)
        vie_header_add(c, st->names[i], st->values[i]);
    return VIE_NEXT;
}

/* A header value a response may carry: not empty, no CR, LF or other
 * control byte (no response splitting). */
static int check_value(const char *v, const char *key, mw_why *w)
{
    if (!*v) return mw_refuse(w, key, "%s is empty (leave it unset not to send the header)", key);
    for (const char *p = v; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return mw_refuse(w, key, "%s holds CR, LF or another control byte", key);
    return VIE_OK;
}

static const char *const referrer_policies[] = {"no-referrer",
                                                "no-referrer-when-downgrade",
                                                "origin",
                                                "origin-when-cross-origin",
                                                "same-origin",
                                                "strict-origin",
                                                "strict-origin-when-cross-origin",
                                                "unsafe-url",
                                                NULL};

/* Referrer-Policy may list fallbacks: "no-referrer, strict-origin". Each
 * must be a policy browsers know, or a typo would silently do nothing. */
static int check_referrer(const char *v, mw_why *w)
{
    for (const char *p = v; *p;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, ", \t");
        bool known = false;
        for (size_t i = 0; n && referrer_policies[i]; i++)
            if (strlen(referrer_policies[i]) == n && !strncasecmp(referrer_policies[i], p, n))
                known = true;
        if (!known)
            return mw_refuse(w, "referrer_policy",
                             "referrer_policy \"%s\": \"%.*s\" is not a policy (no-referrer, "
                             "same-origin, strict-origin-when-cross-origin, ...)",
                             v, (int)n, p);
        p += n;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == ',') p++;
    }
    return VIE_OK;
}

static int add(sh_state *st, const char *name, const char *value, mw_why *w)
{
    char *copy = strdup(value);
    if (!copy) return mw_refuse(w, NULL, "out of memory");
    st->names[st->n] = name;
    st->values[st->n++] = copy;
    return VIE_OK;
}

static int sh_build(const vie_security_headers_opts *o, sh_state **out, mw_why *w)
{
    *out = NULL;
    if (o->hsts_max_age_s > HSTS_MAX_S)
        return mw_refuse(w, "hsts_max_age", "hsts_max_age %u s is above ten years (%u s)",
                         o->hsts_max_age_s, HSTS_MAX_S);
    if (o->hsts_include_subdomains && !o->hsts_max_age_s)
        return mw_refuse(w, "hsts_include_subdomains",
                         "hsts_include_subdomains needs hsts_max_age above 0 (HSTS is off)");
    const char *fo = NULL;
    if (o->frame_options) {
        if (!strcasecmp(o->frame_options, "DENY"))
            fo = "DENY";
        else if (!strcasecmp(o->frame_options, "SAMEORIGIN"))
            fo = "SAMEORIGIN";
        else
            return mw_refuse(
                w, "frame_options",
                "frame_options \"%s\" is neither DENY nor SAMEORIGIN (false: not sent)",
                o->frame_options);
    }
    int rc = VIE_OK;
    if (o->referrer_policy) {
        rc = check_value(o->referrer_policy, "referrer_policy", w);
        if (rc == VIE_OK) rc = check_referrer(o->referrer_policy, w);
    }
    if (rc == VIE_OK && o->content_security_policy)
        rc = check_value(o->content_security_policy, "content_security_policy", w);
    if (rc == VIE_OK && o->permissions_policy)
        rc = check_value(o->permissions_policy, "permissions_policy", w);
    if (rc != VIE_OK) return rc;

    sh_state *st = calloc(1, sizeof *st);
    if (!st) return mw_refuse(w, NULL, "out of memory");
    if (o->hsts_max_age_s) {
        char v[64];
        snprintf(v, sizeof v, "max-age=%u%s", o->hsts_max_age_s,
                 o->hsts_include_subdomains ? "; includeSubDomains" : "");
        rc = add(st, "Strict-Transport-Security", v, w);
    }
    if (rc == VIE_OK && fo) rc = add(st, "X-Frame-Options", fo, w);
    if (rc == VIE_OK && o->nosniff) rc = add(st, "X-Content-Type-Options", "nosniff", w);
    if (rc == VIE_OK && o->referrer_policy) rc = add(st, "Referrer-Policy", o->referrer_policy, w);
    if (rc == VIE_OK && o->content_security_policy)
        rc = add(st, "Content-Security-Policy", o->content_security_policy, w);
    if (rc == VIE_OK && o->permissions_policy)
        rc = add(st, "Permissions-Policy", o->permissions_policy, w);
    if (rc == VIE_OK && st->n == 0)
        rc = mw_refuse(w, NULL, "every header is off: the layer would do nothing");
    if (rc != VIE_OK) {
        sh_free(st);
        return rc;
    }
    *out = st;
    return VIE_OK;
}

void vie_security_headers_opts_init(vie_security_headers_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->frame_options = "DENY";
    o->nosniff = true;
    o->referrer_policy = "no-referrer";
}

static int sh_use(vie_app *app, const vie_layer_opts *lo, const vie_security_headers_opts *o,
                  mw_why *w)
{
    const char *name = mw_name(lo, "security_headers");
    if (app->frozen) return app_refuse_frozen(app, "vie_use_security_headers", name);
    sh_state *st;
    int rc = sh_build(o, &st, w);
    if (rc != VIE_OK) return rc;
    static const vie_middleware base = {
        .name = "security_headers",
        .phase = VIE_OBSERVE,
        .before = sh_before,
        .free_state = sh_free,
    };
    rc = mw_register(app, lo, &base, st);
    if (rc != VIE_OK)
        snprintf(w->msg, sizeof w->msg, "layer %s cannot be registered: %s", name,
                 vie_strerror(rc));
    return rc;
}

int vie_use_security_headers(vie_app *app, const vie_layer_opts *lo,
                             const vie_security_headers_opts *o)
{
    if (!app || !o) {
        LOG_ERROR("security_headers: vie_use_security_headers refused: %s is NULL",
                  !app ? "the app" : "the options");
        return VIE_EINVAL;
    }
    mw_why w = {0};
    int rc = sh_use(app, lo, o, &w);
    if (rc != VIE_OK && w.msg[0])
        LOG_ERROR("security_headers %s: %s", mw_name(lo, "security_headers"), w.msg);
    return rc;
}

/* A header that false (or no, off) switches off (*out = NULL); absent
 * or null (which the readers treat as absent) keeps the default. */
static void read_optional(cfg_params *p, const char *key, const char **out)
{
    const cfg_node *n = cfg_get_node(p, key);
    if (!n) return;
    if (n->kind == CFG_SCALAR && !n->quoted && n->text &&
        (!strcasecmp(n->text, "false") || !strcasecmp(n->text, "no") ||
         !strcasecmp(n->text, "off"))) {
        *out = NULL;
        return;
    }
    cfg_get_str(p, key, out, *out);
}

/* hsts_max_age: whole seconds (31536000), or a number with a unit: s, m,
 * h or d ("365d"). Not cfg_get_ms: its milliseconds stop at 49 days,
 * short of the year HSTS usually asks for. */
static void read_hsts_max_age(cfg_params *p, uint32_t *out)
{
    const cfg_node *n = cfg_get_node(p, "hsts_max_age");
    if (!n) return;
    const char *t = n->kind == CFG_SCALAR && n->text ? n->text : NULL;
    char *end = NULL;
    unsigned long long v = t && *t >= '0' && *t <= '9' ? strtoull(t, &end, 10) : 0;
    unsigned long long mult = 0;
    if (end && end != t) {
        if (!*end)
            mult = 1;
        else if (!strcmp(end, "s"))
            mult = 1;
        else if (!strcmp(end, "m"))
            mult = 60;
        else if (!strcmp(end, "h"))
            mult = 3600;
        else if (!strcmp(end, "d"))
            mult = 86400;
    }
    if (!mult || v > HSTS_MAX_S || v * mult > HSTS_MAX_S) {
        cfg_error(p, "hsts_max_age",
                  "expected whole seconds (31536000) or a duration (365d, 8760h) up to ten "
                  "years, got %s%s%s",
                  t ? "\"" : "", t ? t : cfg_kind_name(n), t ? "\"" : "");
        return;
    }
    *out = (uint32_t)(v * mult);
}

int mw_security_headers_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    vie_security_headers_opts o;
    vie_security_headers_opts_init(&o);
    read_hsts_max_age(p, &o.hsts_max_age_s);
    cfg_get_bool(p, "hsts_include_subdomains", &o.hsts_include_subdomains, false);
    read_optional(p, "frame_options", &o.frame_options);
    cfg_get_bool(p, "nosniff", &o.nosniff, true);
    read_optional(p, "referrer_policy", &o.referrer_policy);
    read_optional(p, "content_security_policy", &o.content_security_policy);
    read_optional(p, "permissions_policy", &o.permissions_policy);
    if (cfg_params_finish(p)) return VIE_EINVAL;
    mw_why w = {0};
    int rc = sh_use(app, lo, &o, &w);
    if (rc != VIE_OK) {
        const char *key = w.key && cfg_has(p, w.key) ? w.key : NULL;
        cfg_error(p, key, "%s", w.msg[0] ? w.msg : vie_strerror(rc));
    }
    return rc;
}
