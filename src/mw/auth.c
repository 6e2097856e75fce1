/* auth: bearer tokens or API keys, checked in constant time; the
 * principal of the matching credential goes into the vie_principal key.
 *
 * Tokens are never kept in the clear: at registration each one is hashed
 * with SipHash-2-4-128 under a key drawn at random for this layer, and the
 * plaintext is wiped. A request's token is hashed the same way and its
 * digest compared with EVERY stored digest, without an early exit and
 * without a branch on the result, so the time taken tells neither which
 * prefix matched nor which principal (the keyed hash also means no prefix
 * of the token survives into the compared bytes). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/cfg.h"
#include "core/app.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "mw/mw.h"
#include "server/shm.h"

VIE_API VIE_KEY_DEFINE(vie_principal, VIE_KEY_OWNER);

/* Internal, and exercised directly by tests/unit/test_mw_auth.c. */
void mw_auth_siphash128(const uint8_t key[16], const void *data, size_t len, uint8_t out[16]);
int mw_auth_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

#define AUTH_DIGEST 16

/* ------------------------------------------------------------------ */
/* SipHash-2-4 with a 128-bit output (Aumasson and Bernstein)           */

static inline uint64_t rotl64(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline void store_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl64(v1, 13);                                                                       \
        v1 ^= v0;                                                                                  \
        v0 = rotl64(v0, 32);                                                                       \
        v2 += v3;                                                                                  \
        v3 = rotl64(v3, 16);                                                                       \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl64(v3, 21);                                                                       \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl64(v1, 17);                                                                       \
        v1 ^= v2;                                                                                  \
        v2 = rotl64(v2, 32);                                                                       \
    } while (0)

void mw_auth_siphash128(const uint8_t key[16], const void *data, size_t len, uint8_t out[16])
{
    const uint8_t *in = data;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    v1 ^= 0xee; /* the 128-bit variant */
    const uint8_t *end = in + (len - len % 8);
    for (; in != end; in += 8) {
        uint64_t m = load_le64(in);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)in[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xee;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    store_le64(out, v0 ^ v1 ^ v2 ^ v3);
    v1 ^= 0xdd;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    store_le64(out + 8, v0 ^ v1 ^ v2 ^ v3);
}

/* 1 when the two byte strings are equal, else 0. The time depends on the
 * lengths only, never on the contents: every byte is read, the
 * differences are OR-ed together and the result is made without a
 * branch. */
int mw_auth_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    const uint8_t *x = a, *y = b;
    size_t n = alen > blen ? alen : blen;
    uint64_t diff = (uint64_t)(alen ^ blen);
    for (size_t i = 0; i < n; i++) {
        uint8_t p = i < alen ? x[i] : 0, q = i < blen ? y[i] : 0;
        diff |= (uint64_t)(p ^ q);
        /* Keep the compiler from turning the loop into an early exit. */
        __asm__ volatile("" : "+r"(diff));
    }
    /* diff | -diff has its top bit set exactly when diff != 0 */
    return (int)(1 ^ ((diff | (0 - diff)) >> 63));
}

/* ------------------------------------------------------------------ */
/* State                                                               */

typedef struct auth_cred {
    uint8_t digest[AUTH_DIGEST];
    char *principal;
} auth_cred;

typedef struct auth_counters {
    _Atomic uint64_t allowed;
    _Atomic uint64_t missing;
    _Atomic uint64_t invalid;
} auth_counters;

typedef struct auth_state {
    vie_auth_scheme scheme;
    char *name;   /* the layer's name, for /metrics */
    char *header; /* where the credentials are */
    uint8_t key[16];
    auth_cred *creds;
    size_t n_creds;
    char *www_missing;   /* WWW-Authenticate when nothing was presented */
    char *www_invalid;   /* ... when a presented credential is wrong */
    char *www_malformed; /* ... when the request is malformed (bearer: 400) */
    auth_counters *n;    /* in shared memory: totals across workers */
} auth_state;

static void auth_free(void *p)
{
    auth_state *st = p;
    if (!st) return;
    for (size_t i = 0; i < st->n_creds; i++)
        free(st->creds[i].principal);
    free(st->creds);
    free(st->name);
    free(st->header);
    free(st->www_missing);
    free(st->www_invalid);
    free(st->www_malformed);
    explicit_bzero(st->key, sizeof st->key);
    free(st);
}

/* A credential while the layer is being built: its token in the clear
 * (wiped before the build returns) and where it came from, for messages
 * that never show the token itself. */
typedef struct pending_cred {
    char *principal;
    char *token;
    size_t token_len;
    const char *key; /* the option it came from */
    char where[300];
} pending_cred;

typedef struct cred_list {
    pending_cred *v;
    size_t n, cap;
} cred_list;

static void cred_list_free(cred_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].principal);
        if (l->v[i].token) {
            explicit_bzero(l->v[i].token, l->v[i].token_len);
            free(l->v[i].token);
        }
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Visible ASCII only: anything else (spaces, controls, bytes >= 0x80)
 * could never arrive intact in a header, so such a token could never
 * match. */
static bool visible_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return false;
    return true;
}

/* Split one "principal:token" entry of n bytes (surrounding blanks
 * trimmed) and add it; where names it in messages ("tokens.txt:3"). */
static int add_entry(cred_list *l, const char *s, size_t n, const char *where, const char *key,
                     mw_why *w)
{
    while (n && is_space(*s))
        s++, n--;
    while (n && is_space(s[n - 1]))
        n--;
    if (memchr(s, '\0', n)) return mw_refuse(w, key, "%s: holds a NUL byte", where);
    const char *colon = memchr(s, ':', n);
    if (!colon) return mw_refuse(w, key, "%s: expected \"principal:token\", found no ':'", where);
    const char *p = s, *t = colon + 1;
    size_t pn = (size_t)(colon - s), tn = n - pn - 1;
    while (pn && is_space(p[pn - 1]))
        pn--;
    while (tn && is_space(*t))
        t++, tn--;
    if (!pn) return mw_refuse(w, key, "%s: the principal (before ':') is empty", where);
    if (!tn) return mw_refuse(w, key, "%s: the token (after ':') is empty", where);
    if (!visible_ascii(p, pn))
        return mw_refuse(w, key, "%s: the principal holds a space, a control or a non-ASCII byte",
                         where);
    if (!visible_ascii(t, tn))
        return mw_refuse(w, key, "%s: the token holds a space, a control or a non-ASCII byte",
                         where);
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        pending_cred *v = realloc(l->v, cap * sizeof *v);
        if (!v) return mw_refuse(w, key, "out of memory");
        l->v = v;
        l->cap = cap;
    }
    pending_cred *c = &l->v[l->n];
    memset(c, 0, sizeof *c);
    c->principal = strndup(p, pn);
    c->token = strndup(t, tn);
    c->token_len = tn;
    c->key = key;
    snprintf(c->where, sizeof c->where, "%s", where);
    l->n++; /* counted first, so cred_list_free releases a half-made entry */
    if (!c->principal || !c->token) return mw_refuse(w, key, "out of memory");
    return VIE_OK;
}

static int read_file(cred_list *l, const char *path, mw_why *w)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mw_refuse(w, "tokens_file", "tokens_file %s cannot be read: %s", path,
                         strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) == 0 && (sb.st_mode & S_IROTH))
        LOG_WARN("auth: tokens_file %s is readable by every user of this machine (chmod o-r)",
                 path);
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return mw_refuse(w, "tokens_file", "tokens_file %s cannot be read: %s", path,
                         strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = VIE_OK;
    for (unsigned lineno = 1; rc == VIE_OK && (got = getline(&line, &cap, f)) >= 0; lineno++) {
        size_t n = (size_t)got;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        size_t i = 0;
        while (i < n && is_space(line[i]))
            i++;
        if (i == n || line[i] == '#') continue; /* blank or a comment */
        char where[300];
        snprintf(where, sizeof where, "%s:%u", path, lineno);
        rc = add_entry(l, line, n, where, "tokens_file", w);
    }
    if (rc == VIE_OK && ferror(f))
        rc =
            mw_refuse(w, "tokens_file", "tokens_file %s cannot be read: %s", path, strerror(errno));
    if (line) {
        explicit_bzero(line, cap);
        free(line);
    }
    fclose(f);
    return rc;
}

static int read_env(cred_list *l, const char *var, mw_why *w)
{
    const char *v = getenv(var);
    if (!v) return mw_refuse(w, "tokens_env", "tokens_env: the variable %s is not set", var);
    if (!*v) return mw_refuse(w, "tokens_env", "tokens_env: the variable %s is empty", var);
    unsigned entry = 1;
    for (const char *s = v;; entry++) {
        size_t n = strcspn(s, ",");
        size_t i = 0;
        while (i < n && is_space(s[i]))
            i++;
        char where[300];
        snprintf(where, sizeof where, "$%s entry %u", var, entry);
        if (i == n) return mw_refuse(w, "tokens_env", "%s: empty (a stray comma?)", where);
        int rc = add_entry(l, s, n, where, "tokens_env", w);
        if (rc != VIE_OK) return rc;
        if (!s[n]) break;
        s += n + 1;
    }
    return VIE_OK;
}

/* A quoted-string parameter value that needs no escaping. */
static bool plain_quotable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e || *s == '"' || *s == '\\')
            return false;
    return true;
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool is_token(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s)) return false;
    return true;
}

static char *fmt_dup(const char *fmt, ...) VIE_PRINTF(1, 2);
static char *fmt_dup(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

/* Validate o, read every credential and make the layer's state. On error
 * w says why (never showing a token) and which option is at fault. */
static int auth_build(const vie_auth_opts *o, const char *name, auth_state **out, mw_why *w)
{
    *out = NULL;
    if (o->scheme != VIE_AUTH_BEARER && o->scheme != VIE_AUTH_API_KEY)
        return mw_refuse(w, "scheme", "scheme %d is neither VIE_AUTH_BEARER nor VIE_AUTH_API_KEY",
                         (int)o->scheme);
    const char *header = o->header && *o->header        ? o->header
                         : o->scheme == VIE_AUTH_BEARER ? "Authorization"
                                                        : "X-Api-Key";
    if (!is_token(header))
        return mw_refuse(w, "header", "header \"%s\" is not a valid header name", header);
    const char *realm = o->realm ? o->realm : "vie";
    if (!*realm || !plain_quotable(realm))
        return mw_refuse(w, "realm",
                         "realm \"%s\" must be non-empty printable ASCII without '\"' or '\\'",
                         realm);
    if (o->tokens_env && !*o->tokens_env)
        return mw_refuse(w, "tokens_env", "tokens_env is an empty variable name");
    if (o->tokens_file && !*o->tokens_file)
        return mw_refuse(w, "tokens_file", "tokens_file is an empty path");

    cred_list l = {0};
    int rc = VIE_OK;
    if (o->tokens_file) rc = read_file(&l, o->tokens_file, w);
    if (rc == VIE_OK && o->tokens_env) rc = read_env(&l, o->tokens_env, w);
    for (size_t i = 0; rc == VIE_OK && o->tokens && o->tokens[i]; i++) {
        char where[64];
        snprintf(where, sizeof where, "tokens[%zu]", i);
        rc = add_entry(&l, o->tokens[i], strlen(o->tokens[i]), where, "tokens", w);
    }
    if (rc == VIE_OK && l.n == 0)
        rc = mw_refuse(w,
                       o->tokens_file  ? "tokens_file"
                       : o->tokens_env ? "tokens_env"
                                       : "tokens",
                       "no credentials: give at least one \"principal:token\" in tokens_file, "
                       "tokens_env or tokens");
    /* Two principals with one token would make the principal a guess. */
    for (size_t i = 0; rc == VIE_OK && i < l.n; i++)
        for (size_t j = i + 1; rc == VIE_OK && j < l.n; j++)
            if (l.v[i].token_len == l.v[j].token_len &&
                !memcmp(l.v[i].token, l.v[j].token, l.v[i].token_len))
                rc =
                    mw_refuse(w, l.v[j].key, "%s and %s hold the same token (principals %s and %s)",
                              l.v[i].where, l.v[j].where, l.v[i].principal, l.v[j].principal);
    auth_state *st = rc == VIE_OK ? calloc(1, sizeof *st) : NULL;
    if (rc == VIE_OK && !st) rc = mw_refuse(w, NULL, "out of memory");
    if (rc == VIE_OK) {
        st->scheme = o->scheme;
        st->name = strdup(name);
        st->header = strdup(header);
        st->creds = calloc(l.n, sizeof *st->creds);
        if (o->scheme == VIE_AUTH_BEARER) {
            st->www_missing = fmt_dup("Bearer realm=\"%s\"", realm);
            st->www_invalid = fmt_dup("Bearer realm=\"%s\", error=\"invalid_token\"", realm);
            st->www_malformed = fmt_dup("Bearer realm=\"%s\", error=\"invalid_request\"", realm);
        } else {
            st->www_missing = fmt_dup("ApiKey realm=\"%s\", header=\"%s\"", realm, header);
            st->www_invalid =
                fmt_dup("ApiKey realm=\"%s\", header=\"%s\", error=\"invalid_key\"", realm, header);
            st->www_malformed =
                fmt_dup("ApiKey realm=\"%s\", header=\"%s\", error=\"invalid_key\"", realm, header);
        }
        if (!st->name || !st->header || !st->creds || !st->www_missing || !st->www_invalid ||
            !st->www_malformed)
            rc = mw_refuse(w, NULL, "out of memory");
    }
    if (rc == VIE_OK && getrandom(st->key, sizeof st->key, 0) != (ssize_t)sizeof st->key)
        rc = mw_refuse(w, NULL, "no random bytes for the hash key: %s", strerror(errno));
    for (size_t i = 0; rc == VIE_OK && i < l.n; i++) {
        mw_auth_siphash128(st->key, l.v[i].token, l.v[i].token_len, st->creds[i].digest);
        st->creds[i].principal = l.v[i].principal;
        l.v[i].principal = NULL;
        st->n_creds++;
    }
    cred_list_free(&l); /* wipes the tokens */
    if (rc != VIE_OK) {
        auth_free(st);
        return rc;
    }
    *out = st;
    return VIE_OK;
}

/* ------------------------------------------------------------------ */
/* The hook                                                            */

/* The principal whose token is tok, or NULL. Every stored digest is
 * compared, whatever matched before it. */
static const char *auth_lookup(const auth_state *st, const char *tok, size_t len)
{
    uint8_t d[AUTH_DIGEST];
    mw_auth_siphash128(st->key, tok, len, d);
    size_t idx = 0, found = 0;
    for (size_t i = 0; i < st->n_creds; i++) {
        size_t eq = (size_t)mw_auth_ct_equal(d, sizeof d, st->creds[i].digest, AUTH_DIGEST);
        size_t mask = (size_t)0 - eq; /* all ones when equal */
        idx = (idx & ~mask) | (i & mask);
        found |= eq;
    }
    explicit_bzero(d, sizeof d);
    return found ? st->creds[idx].principal : NULL;
}

static vie_status deny(vie_ctx *c, int status, const char *www, _Atomic uint64_t *counter,
                       const char *detail)
{
    (*counter)++;
    vie_header_add(c, "WWW-Authenticate", www);
    return vie_send_problem(c, status, detail);
}

static vie_status auth_before(vie_ctx *c, void *arg)
{
    auth_state *st = arg;
    /* Two copies of the credentials header: which one would a proxy
     * have checked? Refused as malformed. */
    size_t copies = 0;
    vie_str hn, hv;
    size_t hlen = strlen(st->header);
    for (size_t i = 0; vie_header_at(c, i, &hn, &hv); i++)
        if (hn.len == hlen && !strncasecmp(hn.ptr, st->header, hlen)) copies++;
    vie_str v = vie_header(c, st->header);
    bool bearer = st->scheme == VIE_AUTH_BEARER;
    if (copies > 1)
        return deny(c, bearer ? 400 : 401, st->www_malformed, &st->n->invalid,
                    bearer ? "more than one Authorization header" : "more than one API key header");
    if (!v.ptr)
        return deny(c, 401, st->www_missing, &st->n->missing,
                    bearer ? "this route needs a bearer token (Authorization: Bearer <token>)"
                           : "this route needs an API key");
    const char *tok = v.ptr;
    size_t len = v.len;
    if (bearer) {
        /* "Bearer" (any case), one space or more, the token (RFC 9110:
         * 1*SP; a tab there is a malformed header, not another scheme). */
        if (len > 6 && tok[6] == '\t' && !strncasecmp(tok, "Bearer", 6))
            return deny(c, 400, st->www_malformed, &st->n->invalid,
                        "the Authorization header separates Bearer from its token with a tab, "
                        "not a space");
        if (len < 6 || strncasecmp(tok, "Bearer", 6) != 0 || (len > 6 && tok[6] != ' '))
            return deny(c, 401, st->www_missing, &st->n->missing,
                        "the Authorization header does not use the Bearer scheme");
        tok += 6;
        len -= 6;
        while (len && *tok == ' ')
            tok++, len--;
        if (!len)
            return deny(c, 400, st->www_malformed, &st->n->invalid,
                        "the Authorization header holds no token");
    } else if (!len) {
        return deny(c, 401, st->www_invalid, &st->n->invalid, "the API key is empty");
    }
    const char *who = auth_lookup(st, tok, len);
    if (!who)
        return deny(c, 401, st->www_invalid, &st->n->invalid,
                    bearer ? "the bearer token is not valid" : "the API key is not valid");
    st->n->allowed++;
    vie_principal_set(c, who); /* the stored string: lives as long as the app */
    return VIE_NEXT;
}

static void auth_metrics(vie_buf *b, void *arg)
{
    auth_state *st = arg;
    metrics_help(b, "vie_auth_decisions_total", "counter",
                 "Requests an auth layer let in (allowed) or refused (missing, invalid).");
    static const char *const results[] = {"allowed", "missing", "invalid"};
    uint64_t v[3] = {st->n->allowed, st->n->missing, st->n->invalid};
    for (int i = 0; i < 3; i++) {
        buf_printf(b, "vie_auth_decisions_total{layer=\"");
        metrics_label(b, st->name);
        buf_printf(b, "\",result=\"%s\"} %llu\n", results[i], (unsigned long long)v[i]);
    }
}

/* ------------------------------------------------------------------ */
/* Registration                                                        */

void vie_auth_opts_init(vie_auth_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->scheme = VIE_AUTH_BEARER;
    o->realm = "vie";
}

static vie_key *const auth_owns[] = {&vie_principal_key, NULL};

/* The layer that already sets vie_principal in app, or NULL. */
static const char *principal_owner(const vie_app *app)
{
    for (size_t i = 0; i < app->n_layers; i++)
        for (vie_key *const *k = app->layers[i]->mw.owns; k && *k; k++)
            if (*k == &vie_principal_key) return app->layers[i]->mw.name;
    return NULL;
}

/* Register, or say why not in w. */
static int auth_use(vie_app *app, const vie_layer_opts *lo, const vie_auth_opts *o, mw_why *w)
{
    const char *name = mw_name(lo, "auth");
    if (app->frozen) return app_refuse_frozen(app, "vie_use_auth", name);
    /* The key has one owner per app (the core checks it at freeze): say
     * so now, naming both layers. */
    const char *owner = principal_owner(app);
    if (owner)
        return mw_refuse(w, NULL,
                         "layer %s would be a second auth layer: %s already sets vie_principal and "
                         "an app has one auth layer (give it every credential)",
                         name, owner);
    auth_state *st;
    int rc = auth_build(o, name, &st, w);
    if (rc != VIE_OK) return rc;
    st->n = shm_alloc(app->shm, sizeof *st->n);
    if (!st->n) {
        auth_free(st);
        return mw_refuse(w, NULL, "the shared memory for its counters is full");
    }
    static const vie_middleware base = {
        .name = "auth",
        .phase = VIE_GUARD,
        .before = auth_before,
        .owns = auth_owns,
        .free_state = auth_free,
    };
    rc = mw_register(app, lo, &base, st); /* frees st on failure; the core logged why */
    if (rc != VIE_OK) {
        w->key = NULL;
        snprintf(w->msg, sizeof w->msg, "layer %s cannot be registered: %s", name,
                 vie_strerror(rc));
        return rc;
    }
    rc = metrics_add_source(app, auth_metrics, st);
    if (rc != VIE_OK) return mw_refuse(w, NULL, "out of memory for its /metrics series");
    return VIE_OK;
}

int vie_use_auth(vie_app *app, const vie_layer_opts *lo, const vie_auth_opts *o)
{
    if (!app || !o) {
        LOG_ERROR("auth: vie_use_auth refused: %s is NULL", !app ? "the app" : "the options");
        return VIE_EINVAL;
    }
    mw_why w = {0};
    int rc = auth_use(app, lo, o, &w);
    if (rc != VIE_OK && w.msg[0])
        LOG_ERROR("auth %s: %s%s%s%s", mw_name(lo, "auth"), w.key ? "option " : "",
                  w.key ? w.key : "", w.key ? ": " : "", w.msg);
    return rc;
}

/* A relative tokens_file is relative to the YAML file that names it, so
 * a config works whatever the server's working directory. */
static const char *config_relative(cfg_params *p, const char *key, const char *path)
{
    if (!path || path[0] == '/') return path;
    const cfg_node *n = cfg_get_node(p, key);
    const char *file = n ? n->mark.file : NULL;
    const char *slash = file ? strrchr(file, '/') : NULL;
    if (!slash) return path;
    size_t dl = (size_t)(slash - file) + 1;
    char *full = cfg_alloc(p->cx, dl + strlen(path) + 1);
    if (!full) return path;
    memcpy(full, file, dl);
    strcpy(full + dl, path);
    return full;
}

int mw_auth_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    static const char *const schemes[] = {"bearer", "api_key", NULL};
    int scheme = 0;
    cfg_get_enum(p, "scheme", &scheme, schemes, 0);
    o.scheme = (vie_auth_scheme)scheme;
    cfg_get_str(p, "header", &o.header, NULL);
    cfg_get_str(p, "tokens_file", &o.tokens_file, NULL);
    cfg_get_str(p, "tokens_env", &o.tokens_env, NULL);
    cfg_get_strv(p, "tokens", &o.tokens);
    cfg_get_str(p, "realm", &o.realm, "vie");
    if (cfg_params_finish(p)) return VIE_EINVAL;
    o.tokens_file = config_relative(p, "tokens_file", o.tokens_file);
    mw_why w = {0};
    int rc = auth_use(app, lo, &o, &w);
    if (rc != VIE_OK) {
        /* The key at fault if it was given, else the instance itself. */
        const char *key = w.key && cfg_has(p, w.key) ? w.key : NULL;
        cfg_error(p, key, "%s", w.msg[0] ? w.msg : vie_strerror(rc));
    }
    return rc;
}
