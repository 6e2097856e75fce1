/* The router: a radix tree over normalized request paths (see router.h).
 *
 * A node is entered by matching its static label (empty for the root and
 * for param and catch-all nodes). From there a lookup tries, in order: the
 * leaf of the node when the path ends, the static child whose label starts
 * with the next byte (at most one: static children have distinct first
 * bytes), the param child, then the catch-all child. Each node is entered
 * at one path offset at most, so backtracking costs at most one visit per
 * node.
 *
 * Param names are not part of the tree: a leaf keeps one slot per method,
 * and each slot carries the names of the pattern that filled it. Two
 * patterns of the same shape therefore end at the same leaf, which is how
 * conflicts are found.
 */
#include "router/router.h"
#include "router/path.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Methods are small ids so that a leaf can test one with a bit mask. The
 * well-known ones come first, in the order the Allow header lists them;
 * other tokens get the next ids in order of first registration. */
enum {
    M_GET,
    M_HEAD,
    M_POST,
    M_PUT,
    M_DELETE,
    M_PATCH,
    M_OPTIONS,
    M_TRACE,
    M_CONNECT,
    M_N_KNOWN,
    M_MAX = 64, /* bits in a leaf's mask */
};

static const char *const known_methods[M_N_KNOWN] = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
};

typedef struct rslot {
    void *route;
    char *pattern;      /* for conflict messages */
    const char **names; /* n_params names; one block with their bytes */
    uint32_t n_params;
    bool has_catchall;
} rslot;

typedef struct rleaf {
    uint64_t mask; /* bit i: slots[i] holds a route */
    rslot *slots;  /* indexed by method id, n_slots long */
    uint32_t n_slots;
    char *allow; /* "GET, HEAD, POST", rebuilt whenever a method is added */
} rleaf;

typedef struct rnode rnode;
struct rnode {
    char *label; /* static bytes consumed on entering; NULL when empty */
    uint32_t label_len;
    uint32_t n_static;
    char *first; /* first[i] == statics[i]->label[0], scanned before any memcmp */
    rnode **statics;
    rnode *param;
    rnode *catchall;
    rleaf *leaf;
};

struct vie_router {
    rnode root;
    size_t count;
    uint32_t n_methods; /* ids in use: the known ones, then custom[] */
    char *custom[M_MAX - M_N_KNOWN];
    uint8_t custom_len[M_MAX - M_N_KNOWN];
};

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- methods ---- */

/* Id of a method, or -1 when no route uses it. Known methods are matched by
 * length first so that a lookup does at most two short compares. */
static int method_id(const vie_router *r, const char *m, size_t len)
{
    switch (len) {
    case 3:
        if (memcmp(m, "GET", 3) == 0) return M_GET;
        if (memcmp(m, "PUT", 3) == 0) return M_PUT;
        break;
    case 4:
        if (memcmp(m, "HEAD", 4) == 0) return M_HEAD;
        if (memcmp(m, "POST", 4) == 0) return M_POST;
        break;
    case 5:
        if (memcmp(m, "PATCH", 5) == 0) return M_PATCH;
        if (memcmp(m, "TRACE", 5) == 0) return M_TRACE;
        break;
    case 6:
        if (memcmp(m, "DELETE", 6) == 0) return M_DELETE;
        break;
    case 7:
        if (memcmp(m, "OPTIONS", 7) == 0) return M_OPTIONS;
        if (memcmp(m, "CONNECT", 7) == 0) return M_CONNECT;
        break;
    default: break;
    }
    for (uint32_t i = 0; i < r->n_methods - M_N_KNOWN; i++) {
        if (r->custom_len[i] == len && memcmp(r->custom[i], m, len) == 0)
            return (int)(M_N_KNOWN + i);
    }
    return -1;
}

static const char *method_name(const vie_router *r, uint32_t id)
{
    return id < M_N_KNOWN ? known_methods[id] : r->custom[id - M_N_KNOWN];
}

/* RFC 9110 5.6.2 tchar, minus lowercase letters: methods are case-sensitive
 * and a route for "get" would silently never see a browser's GET. */
static bool is_method_char(unsigned char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

#define METHOD_MAX_LEN 32

static bool valid_method(const char *m)
{
    size_t len = strlen(m);
    if (len == 0 || len > METHOD_MAX_LEN) return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_method_char((unsigned char)m[i])) return false;
    }
    return true;
}

/* ---- pattern parsing ---- */

enum { TOK_STATIC, TOK_PARAM, TOK_CATCHALL };

typedef struct token {
    int kind;
    const char *s; /* static text, or the param name */
    uint32_t len;
} token;

/* Room for every param plus the static runs around them. */
#define MAX_TOKENS (2 * ROUTER_MAX_PARAMS + 1)

static bool is_name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Split pattern into tokens, refusing anything router.h does not allow.
 * Returns the token count, or -1 with a message in err. */
static int parse_pattern(const char *method, const char *p, token *toks, char *err, size_t errlen)
{
    size_t len = strlen(p);
    if (len == 0 || p[0] != '/') {
        set_err(err, errlen, "%s %s: a pattern must start with '/'", method, p);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f) {
            set_err(err, errlen,
                    "%s %s: byte 0x%02x at offset %zu is not visible ASCII (percent-encode it)",
                    method, p, c, i);
            return -1;
        }
        if ((c == ':' || c == '*') && p[i - 1] != '/') {
            set_err(err, errlen,
                    "%s %s: '%c' at offset %zu does not start a segment; params and catch-alls "
                    "are whole segments (\"/x/%cname\")",
                    method, p, c, i, c);
            return -1;
        }
    }

    /* routing sees normalized paths only: a pattern that normalization would
     * change can never match */
    char *norm = malloc(len);
    if (!norm) {
        set_err(err, errlen, "out of memory");
        return -2;
    }
    ssize_t nlen = path_normalize(p, len, norm);
    bool normal = nlen == (ssize_t)len && memcmp(norm, p, len) == 0;
    free(norm);
    if (!normal) {
        set_err(err, errlen,
                "%s %s: not a normalized path (dot segment, malformed escape or escaped "
                "unreserved character), so no request can match it",
                method, p);
        return -1;
    }

    int n = 0;
    uint32_t n_params = 0;
    size_t i = 0;
    while (i < len) {
        if (p[i] != ':' && p[i] != '*') {
            size_t j = i;
            while (j < len && p[j] != ':' && p[j] != '*')
                j++;
            toks[n++] = (token){TOK_STATIC, p + i, (uint32_t)(j - i)};
            i = j;
            continue;
        }
        bool catchall = p[i] == '*';
        size_t start = i + 1, j = start;
        while (j < len && p[j] != '/')
            j++;
        const char *kind = catchall ? "catch-all" : "param";
        if (j == start) {
            set_err(err, errlen, "%s %s: empty %s name at offset %zu", method, p, kind, i);
            return -1;
        }
        for (size_t k = start; k < j; k++) {
            if (!is_name_char((unsigned char)p[k])) {
                set_err(err, errlen,
                        "%s %s: %s name \"%.*s\" may only hold letters, digits and '_' (a "
                        "%s is a whole segment)",
                        method, p, kind, (int)(j - start), p + start, kind);
                return -1;
            }
        }
        if (catchall && j != len) {
            set_err(err, errlen, "%s %s: catch-all \"*%.*s\" must be the last segment", method, p,
                    (int)(j - start), p + start);
            return -1;
        }
        if (++n_params > ROUTER_MAX_PARAMS) {
            set_err(err, errlen, "%s %s: more than %d params", method, p, ROUTER_MAX_PARAMS);
            return -1;
        }
        for (int t = 0; t < n; t++) {
            if (toks[t].kind != TOK_STATIC && toks[t].len == j - start &&
                memcmp(toks[t].s, p + start, j - start) == 0) {
                set_err(err, errlen, "%s %s: param name \"%.*s\" is used twice", method, p,
                        (int)(j - start), p + start);
                return -1;
            }
        }
        toks[n++] = (token){catchall ? TOK_CATCHALL : TOK_PARAM, p + start, (uint32_t)(j - start)};
        i = j;
    }
    return n;
}

/* ---- tree building ---- */

static rnode *node_new(const char *label, size_t len)
{
    rnode *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    if (len > 0) {
        n->label = malloc(len);
        if (!n->label) {
            free(n);
            return NULL;
        }
        memcpy(n->label, label, len);
        n->label_len = (uint32_t)len;
    }
    return n;
}

static void leaf_free(rleaf *l)
{
    if (!l) return;
    for (uint32_t i = 0; i < l->n_slots; i++) {
        free(l->slots[i].pattern);
        free(l->slots[i].names);
    }
    free(l->slots);
    free(l->allow);
    free(l);
}

/* Children are freed before their parent; depth is bounded by the longest
 * pattern, which the application wrote. */
static void node_free(rnode *n)
{
    for (uint32_t i = 0; i < n->n_static; i++) {
        node_free(n->statics[i]);
        free(n->statics[i]);
    }
    free(n->statics);
    free(n->first);
    if (n->param) {
        node_free(n->param);
        free(n->param);
    }
    if (n->catchall) {
        node_free(n->catchall);
        free(n->catchall);
    }
    leaf_free(n->leaf);
    free(n->label);
}

static int find_static(const rnode *n, char c)
{
    if (n->n_static == 0) return -1;
    const char *f = memchr(n->first, c, n->n_static);
    return f ? (int)(f - n->first) : -1;
}

static bool add_static_child(rnode *n, rnode *child)
{
    rnode **statics = realloc(n->statics, (n->n_static + 1) * sizeof *statics);
    if (!statics) return false;
    n->statics = statics;
    char *first = realloc(n->first, n->n_static + 1);
    if (!first) return false;
    n->first = first;
    n->statics[n->n_static] = child;
    n->first[n->n_static] = child->label[0];
    n->n_static++;
    return true;
}

/* Split statics[idx] of n after its first `at` label bytes: a new node
 * takes those bytes and the old child becomes its only static child with
 * the rest. What matches is unchanged. */
static rnode *split_child(rnode *n, int idx, uint32_t at)
{
    rnode *old = n->statics[idx];
    rnode *mid = node_new(old->label, at);
    char *rest = malloc(old->label_len - at);
    rnode **statics = malloc(sizeof *statics);
    char *first = malloc(1);
    if (!mid || !rest || !statics || !first) {
        if (mid) node_free(mid);
        free(mid);
        free(rest);
        free(statics);
        free(first);
        return NULL;
    }
    memcpy(rest, old->label + at, old->label_len - at);
    free(old->label);
    old->label = rest;
    old->label_len -= at;
    statics[0] = old;
    first[0] = rest[0];
    mid->statics = statics;
    mid->first = first;
    mid->n_static = 1;
    n->statics[idx] = mid;
    return mid;
}

/* Walk down the tree along toks, creating and splitting nodes as needed.
 * Returns the node where the pattern ends, or NULL when out of memory (the
 * tree may keep new empty nodes then, which match nothing). */
static rnode *insert_path(rnode *root, const token *toks, int n_toks)
{
    rnode *n = root;
    for (int t = 0; t < n_toks; t++) {
        const token *tok = &toks[t];
        if (tok->kind == TOK_PARAM || tok->kind == TOK_CATCHALL) {
            rnode **slot = tok->kind == TOK_PARAM ? &n->param : &n->catchall;
            if (!*slot && !(*slot = node_new(NULL, 0))) return NULL;
            n = *slot;
            continue;
        }
        const char *s = tok->s;
        uint32_t len = tok->len;
        while (len > 0) {
            int idx = find_static(n, s[0]);
            if (idx < 0) {
                rnode *child = node_new(s, len);
                if (!child) return NULL;
                if (!add_static_child(n, child)) {
                    node_free(child);
                    free(child);
                    return NULL;
                }
                n = child;
                break;
            }
            rnode *child = n->statics[idx];
            uint32_t common = 1;
            while (common < len && common < child->label_len && child->label[common] == s[common])
                common++;
            if (common < child->label_len && !(child = split_child(n, idx, common))) return NULL;
            n = child;
            s += common;
            len -= common;
        }
    }
    return n;
}

/* Rebuild the Allow value of a leaf: its methods in id order, with HEAD
 * whenever GET is there since GET answers HEAD. */
static bool leaf_build_allow(const vie_router *r, rleaf *l)
{
    uint64_t mask = l->mask;
    if (mask & (1ull << M_GET)) mask |= 1ull << M_HEAD;
    size_t size = 1;
    for (uint32_t id = 0; id < r->n_methods; id++) {
        if (mask & (1ull << id)) size += strlen(method_name(r, id)) + 2;
    }
    char *allow = malloc(size);
    if (!allow) return false;
    size_t o = 0;
    for (uint32_t id = 0; id < r->n_methods; id++) {
        if (!(mask & (1ull << id))) continue;
        const char *name = method_name(r, id);
        size_t nlen = strlen(name);
        if (o > 0) {
            allow[o++] = ',';
            allow[o++] = ' ';
        }
        memcpy(allow + o, name, nlen);
        o += nlen;
    }
    allow[o] = '\0';
    free(l->allow);
    l->allow = allow;
    return true;
}

/* Fill a slot: copy the pattern and the param names into owned memory. */
static bool slot_fill(rslot *slot, void *route, const char *pattern, const token *toks, int n_toks)
{
    uint32_t n = 0;
    size_t bytes = 0;
    for (int t = 0; t < n_toks; t++) {
        if (toks[t].kind == TOK_STATIC) continue;
        n++;
        bytes += toks[t].len + 1;
    }
    char *pat = strdup(pattern);
    const char **names = malloc(n * sizeof *names + bytes + 1);
    if (!pat || !names) {
        free(pat);
        free(names);
        return false;
    }
    char *text = (char *)(names + n);
    uint32_t i = 0;
    for (int t = 0; t < n_toks; t++) {
        if (toks[t].kind == TOK_STATIC) continue;
        memcpy(text, toks[t].s, toks[t].len);
        text[toks[t].len] = '\0';
        names[i++] = text;
        text += toks[t].len + 1;
    }
    slot->route = route;
    slot->pattern = pat;
    slot->names = names;
    slot->n_params = n;
    slot->has_catchall = n_toks > 0 && toks[n_toks - 1].kind == TOK_CATCHALL;
    return true;
}

/* ---- public API: building ---- */

vie_router *router_new(void)
{
    vie_router *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->n_methods = M_N_KNOWN;
    return r;
}

void router_free(vie_router *r)
{
    if (!r) return;
    node_free(&r->root);
    for (uint32_t i = 0; i < r->n_methods - M_N_KNOWN; i++)
        free(r->custom[i]);
    free(r);
}

size_t router_count(const vie_router *r)
{
    return r->count;
}

router_error router_add(vie_router *r, const char *method, const char *pattern, void *route,
                        char *err, size_t errlen)
{
    if (err && errlen > 0) err[0] = '\0';
    if (!method || !valid_method(method)) {
        set_err(err, errlen,
                "%.40s %s: invalid method (expected an uppercase token of at most %d bytes, "
                "e.g. GET)",
                method ? method : "(null)", pattern ? pattern : "(null)", METHOD_MAX_LEN);
        return ROUTER_EPATTERN;
    }
    if (!pattern) {
        set_err(err, errlen, "%s: no pattern", method);
        return ROUTER_EPATTERN;
    }

    token toks[MAX_TOKENS];
    int n_toks = parse_pattern(method, pattern, toks, err, errlen);
    if (n_toks == -2) return ROUTER_ENOMEM;
    if (n_toks < 0) return ROUTER_EPATTERN;

    int id = method_id(r, method, strlen(method));
    if (id < 0 && r->n_methods == M_MAX) {
        set_err(err, errlen, "%s %s: too many distinct methods (at most %d)", method, pattern,
                M_MAX);
        return ROUTER_EPATTERN;
    }

    rnode *n = insert_path(&r->root, toks, n_toks);
    if (!n) goto nomem;
    if (!n->leaf && !(n->leaf = calloc(1, sizeof *n->leaf))) goto nomem;
    rleaf *l = n->leaf;

    if (id >= 0 && (l->mask & (1ull << id))) {
        set_err(err, errlen, "%s %s conflicts with %s %s (already registered)", method, pattern,
                method, l->slots[id].pattern);
        return ROUTER_ECONFLICT;
    }

    /* register a new custom method only now that nothing can fail for a
     * reason the caller could fix */
    if (id < 0) {
        uint32_t c = r->n_methods - M_N_KNOWN;
        if (!(r->custom[c] = strdup(method))) goto nomem;
        r->custom_len[c] = (uint8_t)strlen(method);
        id = (int)r->n_methods++;
    }
    if ((uint32_t)id >= l->n_slots) {
        rslot *slots = realloc(l->slots, ((size_t)id + 1) * sizeof *slots);
        if (!slots) goto nomem;
        memset(slots + l->n_slots, 0, ((size_t)id + 1 - l->n_slots) * sizeof *slots);
        l->slots = slots;
        l->n_slots = (uint32_t)id + 1;
    }
    if (!slot_fill(&l->slots[id], route, pattern, toks, n_toks)) goto nomem;
    l->mask |= 1ull << id;
    if (!leaf_build_allow(r, l)) {
        l->mask &= ~(1ull << id);
        free(l->slots[id].pattern);
        free(l->slots[id].names);
        memset(&l->slots[id], 0, sizeof l->slots[id]);
        goto nomem;
    }
    r->count++;
    return ROUTER_OK;

nomem:
    set_err(err, errlen, "%s %s: out of memory", method, pattern);
    return ROUTER_ENOMEM;
}

/* ---- public API: lookup ---- */

typedef struct search {
    const char *path;
    size_t len;
    int id;                  /* method id, -1 when no route has the method */
    uint32_t depth;          /* params captured so far, in m->params */
    const rleaf *first_leaf; /* best path match, for the Allow header */
    router_match *m;
} search;

/* A leaf matched the path: take it if it has the method. */
static bool try_leaf(search *s, const rleaf *l)
{
    if (!l || l->mask == 0) return false;
    if (!s->first_leaf) s->first_leaf = l;
    int id = s->id;
    if (id < 0) return false;
    if (!(l->mask & (1ull << id))) {
        if (id != M_HEAD || !(l->mask & (1ull << M_GET))) return false;
        id = M_GET;
    }
    const rslot *slot = &l->slots[id];
    router_match *m = s->m;
    m->route = slot->route;
    m->n_params = slot->n_params;
    m->has_catchall = slot->has_catchall;
    for (uint32_t i = 0; i < slot->n_params; i++)
        m->params[i].name = slot->names[i];
    return true;
}

static void push_param(search *s, size_t pos, size_t len)
{
    router_param *p = &s->m->params[s->depth++];
    p->raw = s->path + pos;
    p->raw_len = (uint32_t)len;
}

/* Match the rest of the path from pos against the children of n (whose
 * label is already matched). Returns true once a route is taken. */
static bool match(search *s, const rnode *n, size_t pos)
{
    const char *path = s->path;
    size_t len = s->len;
    for (;;) {
        if (pos == len) {
            if (try_leaf(s, n->leaf)) return true;
            if (n->catchall) {
                push_param(s, pos, 0);
                if (try_leaf(s, n->catchall->leaf)) return true;
                s->depth--;
            }
            return false;
        }

        /* children are few: a plain scan of their first bytes beats a call */
        const rnode *next = NULL;
        char c0 = path[pos];
        for (uint32_t i = 0; i < n->n_static; i++) {
            if (n->first[i] != c0) continue;
            const rnode *c = n->statics[i];
            if (c->label_len <= len - pos &&
                memcmp(c->label + 1, path + pos + 1, c->label_len - 1) == 0)
                next = c;
            break;
        }

        /* nothing to come back to: descend without growing the stack */
        if (!n->param && !n->catchall) {
            if (!next) return false;
            pos += next->label_len;
            n = next;
            continue;
        }

        if (next && match(s, next, pos + next->label_len)) return true;
        if (n->param && path[pos] != '/') {
            const char *slash = memchr(path + pos, '/', len - pos);
            size_t end = slash ? (size_t)(slash - path) : len;
            push_param(s, pos, end - pos);
            if (match(s, n->param, end)) return true;
            s->depth--;
        }
        if (n->catchall) {
            push_param(s, pos, len - pos);
            if (try_leaf(s, n->catchall->leaf)) return true;
            s->depth--;
        }
        return false;
    }
}

router_result router_find(const vie_router *r, const char *method, size_t method_len,
                          const char *path, size_t path_len, router_match *m)
{
    search s = {
        .path = path,
        .len = path_len,
        .id = method_id(r, method, method_len),
        .depth = 0,
        .first_leaf = NULL,
        .m = m,
    };
    m->route = NULL;
    m->allow = NULL;
    m->n_params = 0;
    m->has_catchall = false;
    if (path_len > UINT32_MAX) return ROUTER_NOT_FOUND; /* raw_len is 32-bit */
    if (match(&s, &r->root, 0)) return ROUTER_FOUND;
    if (!s.first_leaf) return ROUTER_NOT_FOUND;
    m->n_params = 0;
    m->allow = s.first_leaf->allow;
    return ROUTER_METHOD_NOT_ALLOWED;
}
