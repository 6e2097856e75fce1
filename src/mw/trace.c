/* trace: W3C Trace Context level 1 (https://www.w3.org/TR/trace-context/).
 *
 * A valid traceparent continues the caller's trace: same trace-id, the
 * caller's span becomes parent_id, this request gets a new span-id, the
 * sampled flag is kept. An invalid or absent one starts a new trace
 * (sampled as opts.sample says) and any tracestate is ignored, as the
 * spec requires. The context goes into the vie_trace key; the response
 * carries "traceparent: 00-<trace-id>-<span-id>-<flags>".
 *
 * Parsing is strict: lowercase hex only, version ff refused, all-zero
 * ids refused, version 00 exactly 55 characters; a later version is read
 * by its first 55 characters when the 56th is '-' (or there is none).
 * Flags other than sampled are cleared: this layer speaks version 00,
 * whose other bits a sender must leave zero. Two traceparent fields make
 * the request's traceparent invalid.
 *
 * tracestate (every field, joined with ',') is kept as received when it
 * is at most 512 characters and every list member is well-formed
 * (key=value per the spec, at most 32 members); otherwise it is dropped
 * whole rather than trimmed. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "mw/ids.h"
#include "mw/mw.h"

VIE_API VIE_KEY_DEFINE(vie_trace, VIE_KEY_OWNER);

#define TP_LEN           55 /* "00-" 32 "-" 16 "-" 2 */
#define TS_MAX_LEN       512
#define TS_MAX_MEMBERS   32
#define TS_MAX_KEY_LEN   256
#define TS_MAX_VALUE_LEN 256

typedef struct trace_state {
    bool response_header;
    bool sample;
} trace_state;

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1; /* uppercase is invalid in traceparent */
}

/* n lowercase hex digits, not all zero (when nonzero is asked for). */
static bool hex_field(const char *p, size_t n, bool nonzero)
{
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        int v = hexval(p[i]);
        if (v < 0) return false;
        any |= v != 0;
    }
    return any || !nonzero;
}

/* Parse a traceparent value; on success fill trace_id, parent_id and
 * flags of out. */
static bool parse_traceparent(const char *p, size_t n, vie_trace_context *out)
{
    if (n < TP_LEN) return false;
    if (!hex_field(p, 2, false) || p[2] != '-') return false;
    int version = hexval(p[0]) * 16 + hexval(p[1]);
    if (version == 0xff) return false;
    if (version == 0 && n != TP_LEN) return false;
    if (n > TP_LEN && p[TP_LEN] != '-') return false;
    const char *tid = p + 3, *pid = p + 36, *fl = p + 53;
    if (!hex_field(tid, 32, true) || tid[32] != '-') return false;
    if (!hex_field(pid, 16, true) || pid[16] != '-') return false;
    if (!hex_field(fl, 2, false)) return false;
    memcpy(out->trace_id, tid, 32);
    out->trace_id[32] = '\0';
    memcpy(out->parent_id, pid, 16);
    out->parent_id[16] = '\0';
    out->flags = (uint8_t)((hexval(fl[0]) * 16 + hexval(fl[1])) & 0x01);
    return true;
}

static bool lcalpha(unsigned char ch)
{
    return ch >= 'a' && ch <= 'z';
}
static bool digit(unsigned char ch)
{
    return ch >= '0' && ch <= '9';
}
static bool keychar(unsigned char ch)
{
    return lcalpha(ch) || digit(ch) || ch == '_' || ch == '-' || ch == '*' || ch == '/';
}

/* key = simple-key / tenant-id "@" system-id */
static bool ts_key(const char *k, size_t n)
{
    if (n == 0 || n > TS_MAX_KEY_LEN) return false;
    const char *at = memchr(k, '@', n);
    if (!at) {
        if (!lcalpha((unsigned char)k[0])) return false;
        for (size_t i = 1; i < n; i++)
            if (!keychar((unsigned char)k[i])) return false;
        return true;
    }
    size_t tn = (size_t)(at - k), sn = n - tn - 1;
    if (tn == 0 || tn > 241 || sn == 0 || sn > 14) return false;
    if (!lcalpha((unsigned char)k[0]) && !digit((unsigned char)k[0])) return false;
    for (size_t i = 1; i < tn; i++)
        if (!keychar((unsigned char)k[i])) return false;
    if (!lcalpha((unsigned char)at[1])) return false;
    for (size_t i = 1; i < sn; i++)
        if (!keychar((unsigned char)at[1 + i])) return false;
    return true;
}

/* value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B
 * / %x2D-3C / %x3E-7E (no ',' and no '='). */
static bool ts_value(const char *v, size_t n)
{
    if (n == 0 || n > TS_MAX_VALUE_LEN) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch > 0x7e || ch == ',' || ch == '=') return false;
    }
    return v[n - 1] != ' ';
}

static bool ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* The whole combined tracestate: every member valid, at most 32. */
static bool tracestate_valid(const char *s, size_t n)
{
    if (n > TS_MAX_LEN) return false;
    size_t members = 0;
    for (size_t i = 0; i <= n;) {
        size_t end = i;
        while (end < n && s[end] != ',')
            end++;
        size_t a = i, b = end;
        while (a < b && ows(s[a]))
            a++;
        while (b > a && ows(s[b - 1]))
            b--;
        if (b > a) { /* empty members are allowed and not counted */
            const char *eq = memchr(s + a, '=', b - a);
            if (!eq || !ts_key(s + a, (size_t)(eq - (s + a))) ||
                !ts_value(eq + 1, (size_t)(s + b - eq - 1)))
                return false;
            if (++members > TS_MAX_MEMBERS) return false;
        }
        i = end + 1;
    }
    return true;
}

/* Every tracestate field joined with ',' (RFC 9110 list combination),
 * NUL-terminated in request memory; NULL if none, too long or invalid. */
static const char *read_tracestate(vie_ctx *c)
{
    size_t total = 0, fields = 0;
    vie_str name, value;
    for (size_t i = 0; vie_header_at(c, i, &name, &value); i++)
        if (name.len == 10 && !strncasecmp(name.ptr, "tracestate", 10)) {
            total += value.len + (fields ? 1 : 0);
            fields++;
        }
    if (!fields || total > TS_MAX_LEN) return NULL;
    char *out = vie_alloc(c, total + 1);
    if (!out) return NULL;
    size_t len = 0;
    for (size_t i = 0; vie_header_at(c, i, &name, &value); i++)
        if (name.len == 10 && !strncasecmp(name.ptr, "tracestate", 10)) {
            if (len) out[len++] = ',';
            memcpy(out + len, value.ptr, value.len);
            len += value.len;
        }
    out[len] = '\0';
    return tracestate_valid(out, len) ? out : NULL;
}

/* The one traceparent field, or absent when there is none or several. */
static vie_str read_traceparent(vie_ctx *c)
{
    vie_str found = {NULL, 0}, name, value;
    int n = 0;
    for (size_t i = 0; vie_header_at(c, i, &name, &value); i++)
        if (name.len == 11 && !strncasecmp(name.ptr, "traceparent", 11)) {
            found = value;
            n++;
        }
    return n == 1 ? found : (vie_str){NULL, 0};
}

static vie_status trace_before(vie_ctx *c, void *arg)
{
    const trace_state *s = arg;
    vie_trace_context *t = vie_alloc(c, sizeof *t);
    if (!t) return VIE_NEXT; /* observing: go on without a trace */
    memset(t, 0, sizeof *t);
    vie_str tp = read_traceparent(c);
    if (tp.ptr && parse_traceparent(tp.ptr, tp.len, t)) {
        t->tracestate = read_tracestate(c);
    } else {
        ids_hex(t->trace_id, 32);
        t->parent_id[0] = '\0';
        t->flags = s->sample ? 0x01 : 0x00;
        t->tracestate = NULL;
    }
    ids_hex(t->span_id, 16);
    vie_trace_set(c, t);
    if (s->response_header) {
        char v[TP_LEN + 1];
        memcpy(v, "00-", 3);
        memcpy(v + 3, t->trace_id, 32);
        v[35] = '-';
        memcpy(v + 36, t->span_id, 16);
        v[52] = '-';
        v[53] = "0123456789abcdef"[t->flags >> 4];
        v[54] = "0123456789abcdef"[t->flags & 15];
        v[55] = '\0';
        vie_header_add(c, "traceparent", v);
    }
    return VIE_NEXT;
}

void vie_trace_opts_init(vie_trace_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->response_header = true;
    o->sample = true;
}

int vie_use_trace(vie_app *app, const vie_layer_opts *lo, const vie_trace_opts *o)
{
    vie_trace_opts def;
    if (!o) {
        vie_trace_opts_init(&def);
        o = &def;
    }
    if (!app) {
        LOG_ERROR("trace %s: refused: the app is NULL", mw_name(lo, "trace"));
        return VIE_EINVAL;
    }
    trace_state *s = calloc(1, sizeof *s);
    if (!s) {
        LOG_ERROR("trace %s: out of memory", mw_name(lo, "trace"));
        return VIE_ENOMEM;
    }
    s->response_header = o->response_header;
    s->sample = o->sample;
    static vie_key *const owns[] = {&vie_trace_key, NULL};
    const vie_middleware base = {
        .name = "trace",
        .phase = VIE_OBSERVE,
        .before = trace_before,
        .owns = owns,
        .free_state = free,
    };
    int rc = mw_register(app, lo, &base, s);
    if (rc != VIE_OK) return rc;
    return vie_app_hook_add(app, VIE_EV_WORKER_START, ids_worker_start, NULL);
}

int mw_trace_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    vie_trace_opts o;
    vie_trace_opts_init(&o);
    cfg_get_bool(p, "response_header", &o.response_header, true);
    cfg_get_bool(p, "sample", &o.sample, true);
    if (cfg_params_finish(p)) return VIE_EINVAL;
    int rc = vie_use_trace(app, lo, &o);
    if (rc != VIE_OK) cfg_error(p, NULL, "cannot add trace: %s", vie_strerror(rc));
    return rc;
}
