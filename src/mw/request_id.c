/* request_id: give every request an id, kept from the client when it
 * sent a well-formed one (trust_incoming), else 32 random lowercase hex
 * digits (128 bits); stored in the vie_request_id key and echoed in the
 * response header.
 *
 * A client's id ends up in log lines and in a response header, so only a
 * conservative charset is kept: 1 to 128 of [A-Za-z0-9] and "-._:+/=@"
 * (UUIDs, hex, base64, "host:pid:n" styles). Nothing that could split a
 * header or a log line (controls, CR, LF), need escaping in JSON (quotes,
 * backslash), separate list items (',' ';') or hide as whitespace. An
 * id outside it is replaced, not repaired. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "mw/ids.h"
#include "mw/mw.h"

VIE_API VIE_KEY_DEFINE(vie_request_id, VIE_KEY_OWNER);

#define RID_MAX_LEN    128
#define RID_HEX_LEN    32 /* 128 random bits */
#define RID_HEADER_MAX 64

typedef struct rid_state {
    char *header;
    bool trust_incoming;
    bool response_header;
} rid_state;

static bool rid_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == ':' || ch == '+' || ch == '/' ||
           ch == '=' || ch == '@';
}

static bool rid_valid(const char *p, size_t n)
{
    if (n == 0 || n > RID_MAX_LEN) return false;
    for (size_t i = 0; i < n; i++)
        if (!rid_char((unsigned char)p[i])) return false;
    return true;
}

/* RFC 9110 token characters. */
static bool tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Why a header name is unusable, or NULL. */
static const char *header_problem(const char *h)
{
    size_t n = strlen(h);
    if (n == 0) return "it is empty";
    if (n > RID_HEADER_MAX) return "it is longer than 64 characters";
    for (size_t i = 0; i < n; i++)
        if (!tchar((unsigned char)h[i])) return "it is not an HTTP token (letters, digits, -_.)";
    static const char *const managed[] = {"content-length", "transfer-encoding", "connection",
                                          "date", "host"};
    for (size_t i = 0; i < sizeof managed / sizeof managed[0]; i++)
        if (!strcasecmp(h, managed[i])) return "Vie sets that header itself";
    return NULL;
}

static vie_status rid_before(vie_ctx *c, void *arg)
{
    const rid_state *s = arg;
    vie_str in = s->trust_incoming ? vie_header(c, s->header) : (vie_str){NULL, 0};
    char *id;
    if (in.ptr && rid_valid(in.ptr, in.len)) {
        id = vie_alloc(c, in.len + 1);
        if (id) {
            memcpy(id, in.ptr, in.len);
            id[in.len] = '\0';
        }
    } else {
        id = vie_alloc(c, RID_HEX_LEN + 1);
        if (id) ids_hex(id, RID_HEX_LEN);
    }
    /* Out of request memory: an observing layer lets the request go on
     * without an id rather than fail it. */
    if (!id) return VIE_NEXT;
    vie_request_id_set(c, id);
    if (s->response_header) vie_header_add(c, s->header, id);
    return VIE_NEXT;
}

static void rid_free(void *arg)
{
    rid_state *s = arg;
    if (!s) return;
    free(s->header);
    free(s);
}

void vie_request_id_opts_init(vie_request_id_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->header = "X-Request-Id";
    o->trust_incoming = true;
    o->response_header = true;
}

int vie_use_request_id(vie_app *app, const vie_layer_opts *lo, const vie_request_id_opts *o)
{
    vie_request_id_opts def;
    if (!o) {
        vie_request_id_opts_init(&def);
        o = &def;
    }
    const char *name = mw_name(lo, "request_id");
    if (!app) {
        LOG_ERROR("request_id %s: refused: the app is NULL", name);
        return VIE_EINVAL;
    }
    const char *header = o->header ? o->header : "X-Request-Id";
    const char *why = header_problem(header);
    if (why) {
        LOG_ERROR("request_id %s: option header \"%s\" refused: %s", name, header, why);
        return VIE_EINVAL;
    }
    rid_state *s = calloc(1, sizeof *s);
    if (!s || !(s->header = strdup(header))) {
        free(s);
        LOG_ERROR("request_id %s: out of memory", name);
        return VIE_ENOMEM;
    }
    s->trust_incoming = o->trust_incoming;
    s->response_header = o->response_header;
    static vie_key *const owns[] = {&vie_request_id_key, NULL};
    const vie_middleware base = {
        .name = "request_id",
        .phase = VIE_OBSERVE,
        .before = rid_before,
        .owns = owns,
        .free_state = rid_free,
    };
    int rc = mw_register(app, lo, &base, s);
    if (rc != VIE_OK) return rc;
    /* Each worker reseeds, so forked workers never repeat each other. */
    return vie_app_hook_add(app, VIE_EV_WORKER_START, ids_worker_start, NULL);
}

int mw_request_id_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    vie_request_id_opts o;
    vie_request_id_opts_init(&o);
    cfg_get_str(p, "header", &o.header, o.header);
    cfg_get_bool(p, "trust_incoming", &o.trust_incoming, true);
    cfg_get_bool(p, "response_header", &o.response_header, true);
    if (cfg_params_finish(p)) return VIE_EINVAL;
    const char *why = header_problem(o.header);
    if (why) {
        cfg_error(p, "header", "expected an HTTP header name, got \"%s\": %s", o.header, why);
        return VIE_EINVAL;
    }
    int rc = vie_use_request_id(app, lo, &o);
    if (rc != VIE_OK) cfg_error(p, NULL, "cannot add request_id: %s", vie_strerror(rc));
    return rc;
}
