/* The typed readers over one map of the config (cfg_params): each reads a
 * key, checks its kind and range, and records an error at the value's
 * file:line:col that says what was expected and what was found. Every key
 * asked for is remembered, so cfg_params_finish can call the rest unknown
 * and suggest the closest known key. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/cfg_priv.h"

/* ------------------------------------------------------------------ */
/* Keys and messages                                                   */

static void known_add(cfg_params *p, const char *key)
{
    size_t n = p->n_known < CFG_MAX_KNOWN ? p->n_known : CFG_MAX_KNOWN;
    for (size_t i = 0; i < n; i++)
        if (strcmp(p->known[i], key) == 0) return;
    if (p->n_known < CFG_MAX_KNOWN) {
        p->known[p->n_known++] = key;
    } else if (p->n_known == CFG_MAX_KNOWN) {
        /* A reader asking for more keys than fit is a bug of ours: say so
         * rather than calling the extra keys unknown. */
        p->n_known++;
        cfg_error_at(p->cx, p->mark, "internal error: more than %d keys read from one map",
                     CFG_MAX_KNOWN);
        p->errors++;
    }
}

static bool is_known(const cfg_params *p, const char *key)
{
    size_t n = p->n_known < CFG_MAX_KNOWN ? p->n_known : CFG_MAX_KNOWN;
    for (size_t i = 0; i < n; i++)
        if (strcmp(p->known[i], key) == 0) return true;
    return p->n_known > CFG_MAX_KNOWN; /* see known_add */
}

/* The member of the map, null or not. */
static const cfg_node *member(const cfg_params *p, const char *key)
{
    return p->map && p->map->kind == CFG_MAP ? cfg_member(p->map, key) : NULL;
}

/* Record key as asked for; its value, NULL when absent or null. */
static const cfg_node *lookup(cfg_params *p, const char *key)
{
    known_add(p, key);
    const cfg_node *n = member(p, key);
    return n && n->kind != CFG_NULL ? n : NULL;
}

/* "what: key "prefix.key": message" at m. key NULL: about the map. */
static void verr(cfg_params *p, const cfg_mark *m, const char *key, const char *fmt, va_list ap)
{
    cfg_ctx *cx = p->cx;
    char *msg = cfg_vprintf(cx, fmt, ap);
    const char *pre = p->prefix ? p->prefix : "";
    char *head;
    if (key)
        head = cfg_printf(cx, "key \"%s%s\": ", pre, cfg_esc(cx, key, 80));
    else if (*pre)
        head = cfg_printf(cx, "key \"%.*s\": ", (int)strlen(pre) - 1, pre); /* no last '.' */
    else
        head = "";
    if (p->what)
        cfg_error_at(cx, m, "%s: %s%s", p->what, head, msg);
    else
        cfg_error_at(cx, m, "%s%s", head, msg);
    p->errors++;
}

static void err_at(cfg_params *p, const cfg_mark *m, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void err_at(cfg_params *p, const cfg_mark *m, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(p, m, key, fmt, ap);
    va_end(ap);
}

void cfg_error(cfg_params *p, const char *key, const char *fmt, ...)
{
    const cfg_node *n = key ? member(p, key) : NULL;
    va_list ap;
    va_start(ap, fmt);
    verr(p, n ? &n->mark : p->mark, key, fmt, ap);
    va_end(ap);
}

void cfg_error_item(cfg_params *p, const char *key, int item, const char *fmt, ...)
{
    const cfg_node *n = key ? member(p, key) : NULL;
    if (n && n->kind == CFG_SEQ && item >= 0) {
        const cfg_node *it = n->first;
        for (int i = 0; it && i < item; i++)
            it = it->next;
        n = it ? it : n;
    }
    va_list ap;
    va_start(ap, fmt);
    verr(p, n ? &n->mark : p->mark, key, fmt, ap);
    va_end(ap);
}

/* What a value is, for "got ...": a quoted excerpt of a scalar, else its
 * kind. quoted_matters: say "a quoted string" where quotes make a value
 * a string and not a number or a boolean. */
static const char *got(cfg_params *p, const cfg_node *n, bool quoted_matters)
{
    if (!n || n->kind != CFG_SCALAR) return cfg_kind_name(n);
    return cfg_printf(p->cx, "%s\"%s\"", quoted_matters && n->quoted ? "a quoted string " : "",
                      cfg_esc(p->cx, n->text, 60));
}

/* ------------------------------------------------------------------ */
/* Params                                                              */

void cfg_params_init(cfg_params *p, cfg_ctx *cx, const cfg_node *map, const char *what)
{
    memset(p, 0, sizeof *p);
    p->cx = cx;
    p->what = what ? cfg_strdup(cx, what) : NULL;
    p->mark = map ? &map->mark : NULL;
    if (map && map->kind != CFG_MAP && map->kind != CFG_NULL) {
        err_at(p, &map->mark, NULL, "expected a map, got %s", got(p, map, false));
        map = NULL;
    }
    p->map = map;
}

void cfg_params_sub(cfg_params *p, const char *key, cfg_params *sub)
{
    const cfg_node *n = lookup(p, key);
    if (n && n->kind != CFG_MAP) {
        err_at(p, &n->mark, key, "expected a map, got %s", got(p, n, false));
        n = NULL;
    }
    memset(sub, 0, sizeof *sub);
    sub->cx = p->cx;
    sub->what = p->what;
    sub->map = n;
    sub->mark = n ? &n->mark : p->mark;
    /* for messages only: escaped once here */
    sub->prefix = cfg_printf(p->cx, "%s%s.", p->prefix ? p->prefix : "", cfg_esc(p->cx, key, 80));
}

int cfg_params_finish(cfg_params *p)
{
    if (!p->map || p->map->kind != CFG_MAP) return p->errors;
    size_t nk = p->n_known < CFG_MAX_KNOWN ? p->n_known : CFG_MAX_KNOWN;
    const char *pre = p->prefix ? p->prefix : "";
    for (const cfg_node *c = p->map->first; c; c = c->next) {
        if (is_known(p, c->key)) continue;
        const char *near = cfg_closest(c->key, p->known, nk);
        char *msg = cfg_printf(p->cx, "unknown key \"%s%s\"", pre, cfg_esc(p->cx, c->key, 80));
        if (p->what) msg = cfg_printf(p->cx, "%s in %s", msg, p->what);
        if (near) msg = cfg_printf(p->cx, "%s; did you mean \"%s%s\"?", msg, pre, near);
        cfg_error_at(p->cx, &c->key_mark, "%s", msg);
        p->errors++;
    }
    return p->errors;
}

bool cfg_has(cfg_params *p, const char *key)
{
    return lookup(p, key) != NULL;
}

bool cfg_require(cfg_params *p, const char *key)
{
    if (lookup(p, key)) return true;
    const char *pre = p->prefix ? p->prefix : "";
    if (p->what)
        cfg_error_at(p->cx, p->mark, "%s: missing required key \"%s%s\"", p->what, pre, key);
    else
        cfg_error_at(p->cx, p->mark, "missing required key \"%s%s\"", pre, key);
    p->errors++;
    return false;
}

const cfg_node *cfg_get_node(cfg_params *p, const char *key)
{
    return lookup(p, key);
}

/* The scalar at key, or NULL (absent; or not a scalar: error recorded,
 * expected names what was wanted). */
static const cfg_node *scalar(cfg_params *p, const char *key, const char *expected, bool *bad)
{
    const cfg_node *n = lookup(p, key);
    *bad = false;
    if (n && n->kind != CFG_SCALAR) {
        err_at(p, &n->mark, key, "expected %s, got %s", expected, got(p, n, false));
        *bad = true;
        return NULL;
    }
    return n;
}

bool cfg_get_str(cfg_params *p, const char *key, const char **out, const char *def)
{
    bool bad;
    const cfg_node *n = scalar(p, key, "a string", &bad);
    *out = n ? n->text : def;
    return n != NULL;
}

bool cfg_get_bool(cfg_params *p, const char *key, bool *out, bool def)
{
    bool bad;
    *out = def;
    const cfg_node *n = scalar(p, key, "true or false", &bad);
    if (!n) return false;
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    if (!n->quoted) {
        for (int i = 0; i < 3; i++) {
            if (strcasecmp(n->text, yes[i]) == 0) return *out = true;
            if (strcasecmp(n->text, no[i]) == 0) {
                *out = false;
                return true;
            }
        }
    }
    err_at(p, &n->mark, key, "expected true or false, got %s", got(p, n, true));
    return false;
}

/* ------------------------------------------------------------------ */
/* Numbers                                                             */

/* Length of a decimal number at s: digits, then optionally '.' digits;
 * with exp, an exponent too. 0 when there is none. */
static size_t scan_decimal(const char *s, bool exp)
{
    size_t i = 0;
    if (s[i] < '0' || s[i] > '9') return 0;
    while (s[i] >= '0' && s[i] <= '9')
        i++;
    if (s[i] == '.' && s[i + 1] >= '0' && s[i + 1] <= '9') {
        i++;
        while (s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (exp && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (s[j] == '+' || s[j] == '-') j++;
        if (s[j] >= '0' && s[j] <= '9') {
            while (s[j] >= '0' && s[j] <= '9')
                j++;
            i = j;
        }
    }
    return i;
}

/* Digits only. 1: ok; 0: not a number; 2: too big for 64 bits. */
static int parse_u64(const char *s, uint64_t *out)
{
    if (!*s) return 0;
    uint64_t v = 0;
    bool big = false;
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9') return 0;
        unsigned d = (unsigned)(*c - '0');
        if (v > (UINT64_MAX - d) / 10) big = true;
        if (!big) v = v * 10 + d;
    }
    *out = v;
    return big ? 2 : 1;
}

static char *int_range(cfg_params *p, long long min, long long max, long long type_min,
                       long long type_max)
{
    if (max >= type_max) {
        if (min <= type_min) return type_min < 0 ? "an integer" : "a non-negative integer";
        return cfg_printf(p->cx, "an integer of at least %lld", min);
    }
    if (min <= type_min && type_min < 0)
        return cfg_printf(p->cx, "an integer of at most %lld", max);
    return cfg_printf(p->cx, "an integer from %lld to %lld", min, max);
}

bool cfg_get_u64(cfg_params *p, const char *key, uint64_t *out, uint64_t min, uint64_t max,
                 uint64_t def)
{
    *out = def;
    const cfg_node *n = lookup(p, key);
    if (!n) return false;
    bool sc = n->kind == CFG_SCALAR; /* else the error says what it is */
    uint64_t v = 0;
    int r = sc && !n->quoted ? parse_u64(n->text, &v) : 0;
    if (r == 1 && v >= min && v <= max) {
        *out = v;
        return true;
    }
    const char *range =
        max == UINT64_MAX
            ? (min == 0 ? "a non-negative integer"
                        : cfg_printf(p->cx, "an integer of at least %llu", (unsigned long long)min))
            : cfg_printf(p->cx, "an integer from %llu to %llu", (unsigned long long)min,
                         (unsigned long long)max);
    err_at(p, &n->mark, key, "expected %s, got %s", range, got(p, n, true));
    return false;
}

bool cfg_get_u32(cfg_params *p, const char *key, uint32_t *out, uint32_t min, uint32_t max,
                 uint32_t def)
{
    *out = def;
    const cfg_node *n = lookup(p, key);
    if (!n) return false;
    bool sc = n->kind == CFG_SCALAR; /* else the error says what it is */
    uint64_t v = 0;
    int r = sc && !n->quoted ? parse_u64(n->text, &v) : 0;
    if (r == 1 && v >= min && v <= max) {
        *out = (uint32_t)v;
        return true;
    }
    err_at(p, &n->mark, key, "expected %s, got %s", int_range(p, min, max, 0, UINT32_MAX),
           got(p, n, true));
    return false;
}

bool cfg_get_int(cfg_params *p, const char *key, int *out, int min, int max, int def)
{
    *out = def;
    const cfg_node *n = lookup(p, key);
    if (!n) return false;
    bool sc = n->kind == CFG_SCALAR; /* else the error says what it is */
    const char *s = sc ? n->text : "";
    bool neg = *s == '-';
    uint64_t v = 0;
    int r = sc && !n->quoted ? parse_u64(s + neg, &v) : 0;
    if (r == 1 && v <= (uint64_t)INT_MAX + 1) {
        long long x = neg ? -(long long)v : (long long)v;
        if (x >= min && x <= max) {
            *out = (int)x;
            return true;
        }
    }
    err_at(p, &n->mark, key, "expected %s, got %s", int_range(p, min, max, INT_MIN, INT_MAX),
           got(p, n, true));
    return false;
}

/* A finite decimal number with an optional '-'. */
static bool parse_double(const char *s, double *out)
{
    const char *d = *s == '-' ? s + 1 : s;
    size_t len = scan_decimal(d, true);
    if (len == 0 || d[len] != '\0') return false;
    double v = strtod(s, NULL);
    if (!isfinite(v)) return false;
    *out = v;
    return true;
}

bool cfg_get_double(cfg_params *p, const char *key, double *out, double min, double max, double def)
{
    *out = def;
    const cfg_node *n = lookup(p, key);
    if (!n) return false;
    bool sc = n->kind == CFG_SCALAR; /* else the error says what it is */
    double v = 0;
    if (sc && !n->quoted && parse_double(n->text, &v) && v >= min && v <= max) {
        *out = v;
        return true;
    }
    const char *range;
    if (min <= -DBL_MAX && max >= DBL_MAX)
        range = "a number";
    else if (max >= DBL_MAX)
        range = cfg_printf(p->cx, "a number of at least %g", min);
    else if (min <= -DBL_MAX)
        range = cfg_printf(p->cx, "a number of at most %g", max);
    else
        range = cfg_printf(p->cx, "a number from %g to %g", min, max);
    err_at(p, &n->mark, key, "expected %s, got %s", range, got(p, n, true));
    return false;
}

bool cfg_get_percent(cfg_params *p, const char *key, double *out, double def)
{
    *out = def;
    const cfg_node *n = lookup(p, key);
    if (!n) return false;
    bool sc = n->kind == CFG_SCALAR; /* else the error says what it is */
    const char *s = sc ? n->text : "";
    size_t len = scan_decimal(s, false);
    if (len > 0 && (s[len] == '\0' || (s[len] == '%' && s[len + 1] == '\0'))) {
        double v = strtod(s, NULL);
        if (v >= 0 && v <= 100) {
            *out = v;
            return true;
        }
    }
    err_at(p, &n->mark, key, "expected a percentage from 0 to 100, got %s", got(p, n, false));
    return false;
}

/* ------------------------------------------------------------------ */
/* Durations and sizes                                                 */

/* "1h", "5m", "2s", "250ms": the largest unit that divides ms. */
static char *human_ms(cfg_params *p, uint64_t ms)
{
    if (ms && ms % 3600000 == 0)
        return cfg_printf(p->cx, "%lluh", (unsigned long long)(ms / 3600000));
    if (ms && ms % 60000 == 0) return cfg_printf(p->cx, "%llum", (unsigned long long)(ms / 60000));
    if (ms && ms % 1000 == 0) return cfg_printf(p->cx, "%llus", (unsigned long long)(ms / 1000));
    return cfg_printf(p->cx, "%llums", (unsigned long long)ms);
}

static char *human_bytes(cfg_params *p, uint64_t b)
{
    static const char *const units[] = {"GiB", "MiB", "KiB"};
    static const uint64_t sizes[] = {1ULL << 30, 1ULL << 20, 1ULL << 10};
    for (int i = 0; i < 3; i++)
        if (b && b % sizes[i] == 0)
            return cfg_printf(p->cx, "%llu%s", (unsigned long long)(b / sizes[i]), units[i]);
    return cfg_printf(p->cx, "%llu", (unsigned long long)b);
}

/* A number, optional spaces, then a unit from units[] (factors[]); no unit:
 * factor 1 and the number must be an integer. Returns false when the text
 * does not have that shape; *v is the value times the unit (may be huge). */
static bool parse_with_unit(const char *s, const char *const *units, const double *factors,
                            double *v)
{
    size_t len = scan_decimal(s, false);
    if (len == 0) return false;
    double x = strtod(s, NULL);
    const char *u = s + len;
    if (*u == '\0') {
        if (memchr(s, '.', len)) return false; /* "1.5": in which unit? */
        *v = x;
        return true;
    }
    while (*u == ' ')
        u++;
    for (size_t i = 0; units[i]; i++) {
        if (strcmp(u, units[i]) == 0) {
            *v = x * factors[i];
            return true;
        }
    }
    return false;
}

bool cfg_get_ms(cfg_params *p, const char *key, uint32_t *out, uint32_t min, uint32_t max,
                uint32_t def)
{
    static const char *const units[] = {"ms", "s", "m", "h", NULL};
    static const double factors[] = {1, 1000, 60000, 3600000};
    *out = def;
    const cfg_node *n = lookup(p, key);
    if (!n) return false;
    bool sc = n->kind == CFG_SCALAR; /* else the error says what it is */
    double v = 0;
    bool shape = sc && parse_with_unit(n->text, units, factors, &v);
    v = round(v);
    if (shape && v >= min && v <= max) {
        *out = (uint32_t)v;
        return true;
    }
    const char *range =
        max == UINT32_MAX
            ? cfg_printf(p->cx, "a duration of at least %s", human_ms(p, min))
            : cfg_printf(p->cx, "a duration from %s to %s", human_ms(p, min), human_ms(p, max));
    err_at(p, &n->mark, key, "expected %s, got %s%s", range, got(p, n, false),
           shape || !sc ? "" : " (a number of ms, s, m or h: 250ms, 1.5s)");
    return false;
}

bool cfg_get_bytes(cfg_params *p, const char *key, uint64_t *out, uint64_t min, uint64_t max,
                   uint64_t def)
{
    static const char *const units[] = {"B",   "k",  "K", "KiB", "KB", "M",
                                        "MiB", "MB", "G", "GiB", "GB", NULL};
    static const double factors[] = {1,       1024, 1024,         1024,         1e3, 1048576,
                                     1048576, 1e6,  1073741824.0, 1073741824.0, 1e9};
    *out = def;
    const cfg_node *n = lookup(p, key);
    if (!n) return false;
    bool sc = n->kind == CFG_SCALAR; /* else the error says what it is */
    double v = 0;
    bool shape = sc && parse_with_unit(n->text, units, factors, &v);
    v = round(v);
    /* 2^64 is the first double above UINT64_MAX */
    if (shape && v < 18446744073709551616.0 && (uint64_t)v >= min && (uint64_t)v <= max) {
        *out = (uint64_t)v;
        return true;
    }
    const char *range =
        max == UINT64_MAX
            ? (min == 0 ? "a size"
                        : cfg_printf(p->cx, "a size of at least %s", human_bytes(p, min)))
            : cfg_printf(p->cx, "a size from %s to %s", human_bytes(p, min), human_bytes(p, max));
    err_at(p, &n->mark, key, "expected %s, got %s%s", range, got(p, n, false),
           shape || !sc ? "" : " (bytes, or a number with k, KiB, KB, M, MiB, MB, G, GiB or GB)");
    return false;
}

/* ------------------------------------------------------------------ */
/* Enums and lists                                                     */

bool cfg_get_enum(cfg_params *p, const char *key, int *out, const char *const *names, int def)
{
    *out = def;
    size_t count = 0;
    while (names[count])
        count++;
    /* "one of a|b|c" */
    size_t len = 16;
    for (size_t i = 0; i < count; i++)
        len += strlen(names[i]) + 1;
    char *list = cfg_alloc(p->cx, len);
    strcpy(list, count > 1 ? "one of " : "");
    for (size_t i = 0; i < count; i++) {
        if (i) strcat(list, "|");
        strcat(list, names[i]);
    }
    bool bad;
    const cfg_node *n = scalar(p, key, list, &bad);
    if (!n) return false;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(n->text, names[i]) == 0) {
            *out = (int)i;
            return true;
        }
    }
    const char *near = cfg_closest(n->text, names, count);
    if (near)
        err_at(p, &n->mark, key, "expected %s, got %s; did you mean \"%s\"?", list,
               got(p, n, false), near);
    else
        err_at(p, &n->mark, key, "expected %s, got %s", list, got(p, n, false));
    return false;
}

bool cfg_get_strv(cfg_params *p, const char *key, const char *const **out)
{
    *out = NULL;
    const cfg_node *n = lookup(p, key);
    if (!n) return false;
    if (n->kind == CFG_SCALAR) {
        const char **v = cfg_alloc(p->cx, 2 * sizeof *v);
        v[0] = n->text;
        *out = v;
        return true;
    }
    if (n->kind != CFG_SEQ) {
        err_at(p, &n->mark, key, "expected a list of strings, got %s", got(p, n, false));
        return false;
    }
    const char **v = cfg_alloc(p->cx, (n->n + 1) * sizeof *v);
    size_t i = 0;
    bool ok = true;
    for (const cfg_node *c = n->first; c; c = c->next, i++) {
        if (c->kind != CFG_SCALAR) {
            char *k = cfg_printf(p->cx, "%s.%zu", key, i);
            err_at(p, &c->mark, k, "expected a string, got %s", got(p, c, false));
            ok = false;
            continue;
        }
        v[i] = c->text;
    }
    if (!ok) return false;
    *out = v;
    return true;
}
