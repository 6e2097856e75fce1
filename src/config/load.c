/* The loader: YAML (libfyaml's event parser) to a cfg_node tree that keeps
 * file:line:col for every node, ${VAR} substitution in values, the
 * vie.<env>.yaml overlay and its deep merge.
 *
 * Events rather than libfyaml's document API, because we want what the
 * document API hides or does differently: both positions of a duplicate
 * key, the position of a second document, a budget on alias expansion,
 * and the syntax errors as data (collected through a fy_diag) instead of
 * text on stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libfyaml.h>

#include "config/cfg_priv.h"

#define MAX_DEPTH 128

typedef struct anchor {
    char *name;
    cfg_node *node;
    bool done; /* false while its own children are being read */
} anchor;

typedef struct loader {
    cfg_ctx *cx;
    const char *file; /* in cx memory */
    const char *text; /* the input, len bytes */
    size_t len;
    struct fy_parser *fyp;
    struct fy_diag *diag;
    anchor *anchors; /* malloc'd, freed when the file is done */
    size_t n_anchors, cap_anchors;
    cfg_mark last; /* the last position seen: a fallback for empty values */
    bool fatal;    /* stop reading: a syntax error, or too many nodes */
} loader;

/* ------------------------------------------------------------------ */
/* Events                                                              */

static cfg_mark mark_of(loader *L, struct fy_event *ev)
{
    const struct fy_mark *m = ev ? fy_event_start_mark(ev) : NULL;
    if (!m) return L->last;
    cfg_mark r = {L->file, (uint32_t)m->line + 1, (uint32_t)m->column + 1};
    /* libfyaml marks a quoted scalar after its quote and an alias after
     * its '*': point at where the value starts, as for everything else. */
    char c = m->input_pos > 0 && m->input_pos <= L->len ? L->text[m->input_pos - 1] : 0;
    bool quoted = ev->type == FYET_SCALAR && ev->scalar.value &&
                  (fy_token_scalar_style(ev->scalar.value) == FYSS_SINGLE_QUOTED ||
                   fy_token_scalar_style(ev->scalar.value) == FYSS_DOUBLE_QUOTED);
    if (r.col > 1 && ((quoted && (c == '"' || c == '\'')) || (ev->type == FYET_ALIAS && c == '*')))
        r.col--;
    L->last = r;
    return r;
}

static struct fy_event *next_event(loader *L)
{
    if (L->fatal) return NULL;
    struct fy_event *ev = fy_parser_parse(L->fyp);
    if (!ev) L->fatal = true; /* the caller expected more: a syntax error */
    return ev;
}

static void free_event(loader *L, struct fy_event *ev)
{
    if (ev) fy_parser_event_free(L->fyp, ev);
}

static void lerror(loader *L, const cfg_mark *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lerror(loader *L, const cfg_mark *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_verror_at(L->cx, m, fmt, ap);
    va_end(ap);
}

static cfg_node *new_node(loader *L, cfg_kind kind, cfg_mark m)
{
    if (++L->cx->mem->nodes > CFG_MAX_NODES) {
        if (!L->fatal)
            lerror(L, &m, "more than %d values in the config (aliases expanding too much?)",
                   CFG_MAX_NODES);
        L->fatal = true;
        return NULL;
    }
    cfg_node *n = cfg_alloc(L->cx, sizeof *n);
    n->kind = kind;
    n->mark = m;
    return n;
}

static void append(cfg_node *parent, cfg_node **tail, cfg_node *child)
{
    if (*tail)
        (*tail)->next = child;
    else
        parent->first = child;
    *tail = child;
    parent->n++;
}

/* ------------------------------------------------------------------ */
/* Anchors and aliases                                                 */

static anchor *anchor_add(loader *L, struct fy_token *tok, cfg_node *node)
{
    if (!tok || !node) return NULL;
    if (L->n_anchors == L->cap_anchors) {
        size_t cap = L->cap_anchors ? L->cap_anchors * 2 : 16;
        anchor *a = realloc(L->anchors, cap * sizeof *a);
        if (!a) {
            fputs("vie: config: out of memory\n", stderr);
            abort();
        }
        L->anchors = a;
        L->cap_anchors = cap;
    }
    size_t len;
    const char *t = fy_token_get_text(tok, &len);
    anchor *a = &L->anchors[L->n_anchors++];
    a->name = cfg_strndup(L->cx, t ? t : "", t ? len : 0);
    a->node = node;
    a->done = false;
    return a;
}

static anchor *anchor_find(loader *L, const char *name)
{
    /* An anchor may be defined again: the latest one counts. */
    for (size_t i = L->n_anchors; i-- > 0;)
        if (strcmp(L->anchors[i].name, name) == 0) return &L->anchors[i];
    return NULL;
}

/* A deep copy: an alias gets nodes of its own, since a node's key and
 * next belong to one place in the tree. */
static cfg_node *copy_node(loader *L, const cfg_node *src, int depth)
{
    cfg_node *n = new_node(L, src->kind, src->mark);
    if (!n) return NULL;
    n->text = src->text;
    n->quoted = src->quoted;
    n->key = src->key;
    n->key_mark = src->key_mark;
    cfg_node *tail = NULL;
    for (const cfg_node *c = src->first; c; c = c->next) {
        cfg_node *cc = copy_node(L, c, depth + 1);
        if (!cc) return NULL;
        append(n, &tail, cc);
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* ${VAR} substitution                                                 */

static bool var_name_ok(const char *s, size_t n)
{
    if (n == 0 || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

/* Replace ${VAR} and ${VAR:-default} in n->text; "$${" is a literal "${".
 * Errors point at the scalar. */
static void substitute(loader *L, cfg_node *n)
{
    const char *s = n->text;
    if (!strchr(s, '$')) return;
    size_t cap = strlen(s) + 1, len = 0;
    char *out = malloc(cap);
    if (!out) abort();
#define PUT(p, k)                                                                                  \
    do {                                                                                           \
        size_t k_ = (k);                                                                           \
        if (len + k_ + 1 > cap) {                                                                  \
            while (len + k_ + 1 > cap)                                                             \
                cap *= 2;                                                                          \
            char *o_ = realloc(out, cap);                                                          \
            if (!o_) abort();                                                                      \
            out = o_;                                                                              \
        }                                                                                          \
        memcpy(out + len, (p), k_);                                                                \
        len += k_;                                                                                 \
    } while (0)
    const char *p = s;
    while (*p) {
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
            PUT("${", 2);
            p += 3;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            PUT(p, 1);
            p++;
            continue;
        }
        const char *start = p + 2;
        const char *end = strchr(start, '}');
        if (!end) {
            lerror(L, &n->mark,
                   "unterminated \"${\" in \"%s\" (write \"$${\" for a literal \"${\")",
                   cfg_esc(L->cx, s, 60));
            free(out);
            return;
        }
        const char *sep = NULL;
        for (const char *q = start; q + 1 < end; q++) {
            if (q[0] == ':' && q[1] == '-') {
                sep = q;
                break;
            }
        }
        size_t name_len = (size_t)((sep ? sep : end) - start);
        char name[256];
        if (!var_name_ok(start, name_len) || name_len >= sizeof name) {
            char *bad = cfg_strndup(L->cx, start, name_len);
            lerror(L, &n->mark, "invalid variable name \"%s\" in \"${...}\"",
                   cfg_esc(L->cx, bad, 60));
            free(out);
            return;
        }
        memcpy(name, start, name_len);
        name[name_len] = '\0';
        const char *val = getenv(name);
        if (sep && (!val || !*val)) {
            PUT(sep + 2, (size_t)(end - (sep + 2)));
        } else if (val) {
            PUT(val, strlen(val));
        } else {
            lerror(L, &n->mark,
                   "environment variable \"%s\" is not set (use ${%s:-default} to give a default)",
                   name, name);
            free(out);
            return;
        }
        p = end + 1;
    }
#undef PUT
    n->text = cfg_strndup(L->cx, out, len);
    free(out);
}

/* ------------------------------------------------------------------ */
/* The tree                                                            */

static bool plain_null(const char *t)
{
    return !*t || strcmp(t, "~") == 0 || strcmp(t, "null") == 0 || strcmp(t, "Null") == 0 ||
           strcmp(t, "NULL") == 0;
}

static cfg_node *parse_node(loader *L, struct fy_event *ev, bool is_key, int depth);

static cfg_node *parse_scalar(loader *L, struct fy_event *ev, bool is_key)
{
    cfg_mark m = mark_of(L, ev);
    struct fy_token *tok = ev->scalar.value;
    size_t len = 0;
    const char *t = tok ? fy_token_get_text(tok, &len) : NULL;
    if (!t) {
        t = "";
        len = 0;
    }
    enum fy_scalar_style style = tok ? fy_token_scalar_style(tok) : FYSS_PLAIN;
    cfg_node *n = new_node(L, CFG_SCALAR, m);
    if (!n) return NULL;
    n->text = cfg_strndup(L->cx, t, len);
    n->quoted = style == FYSS_SINGLE_QUOTED || style == FYSS_DOUBLE_QUOTED;
    if (memchr(t, '\0', len)) lerror(L, &m, "a NUL character is not allowed in a value");
    if (!is_key) {
        if (style == FYSS_PLAIN && plain_null(n->text)) {
            n->kind = CFG_NULL;
            n->text = NULL;
        } else {
            substitute(L, n);
        }
    }
    anchor *a = anchor_add(L, ev->scalar.anchor, n);
    if (a) a->done = true;
    return n;
}

static cfg_node *parse_alias(loader *L, struct fy_event *ev)
{
    cfg_mark m = mark_of(L, ev);
    size_t len = 0;
    const char *t = ev->alias.anchor ? fy_token_get_text(ev->alias.anchor, &len) : NULL;
    char *name = cfg_strndup(L->cx, t ? t : "", t ? len : 0);
    anchor *a = anchor_find(L, name);
    if (!a) {
        name = cfg_esc(L->cx, name, 60);
        lerror(L, &m, "alias \"*%s\" refers to no anchor \"&%s\" before it", name, name);
        return new_node(L, CFG_NULL, m);
    }
    if (!a->done) {
        lerror(L, &m, "alias \"*%s\" is inside the value it refers to", cfg_esc(L->cx, name, 60));
        return new_node(L, CFG_NULL, m);
    }
    cfg_node *n = copy_node(L, a->node, 0);
    if (n) {
        n->mark = m; /* the alias is where this value was set */
        n->key = NULL;
        n->next = NULL;
    }
    return n;
}

static cfg_node *parse_seq(loader *L, struct fy_event *ev, int depth)
{
    cfg_node *n = new_node(L, CFG_SEQ, mark_of(L, ev));
    if (!n) return NULL;
    anchor *a = anchor_add(L, ev->sequence_start.anchor, n);
    size_t ai = a ? (size_t)(a - L->anchors) : 0;
    cfg_node *tail = NULL;
    for (;;) {
        struct fy_event *e = next_event(L);
        if (!e) return NULL;
        if (e->type == FYET_SEQUENCE_END) {
            free_event(L, e);
            break;
        }
        cfg_node *c = parse_node(L, e, false, depth + 1);
        if (!c) return NULL;
        append(n, &tail, c);
    }
    if (a) L->anchors[ai].done = true; /* by index: the array may have moved */
    return n;
}

static cfg_node *parse_map(loader *L, struct fy_event *ev, int depth)
{
    cfg_node *n = new_node(L, CFG_MAP, mark_of(L, ev));
    if (!n) return NULL;
    anchor *a = anchor_add(L, ev->mapping_start.anchor, n);
    size_t ai = a ? (size_t)(a - L->anchors) : 0;
    cfg_node *tail = NULL;
    for (;;) {
        struct fy_event *e = next_event(L);
        if (!e) return NULL;
        if (e->type == FYET_MAPPING_END) {
            free_event(L, e);
            break;
        }
        cfg_node *k = parse_node(L, e, true, depth + 1);
        if (!k) return NULL;
        const char *key = k->text;
        if (k->kind != CFG_SCALAR) {
            lerror(L, &k->mark, "expected a string as a key, got %s", cfg_kind_name(k));
            key = "";
        }
        /* An empty value has no position of its own: mark_of gives it
         * the last one seen, its key's. */
        e = next_event(L);
        if (!e) return NULL;
        cfg_node *v = parse_node(L, e, false, depth + 1);
        if (!v) return NULL;
        for (const cfg_node *c = n->first; c; c = c->next) {
            if (strcmp(c->key, key) == 0) {
                lerror(L, &k->mark, "duplicate key \"%s\" (first at %s:%u:%u)",
                       cfg_esc(L->cx, key, 80), c->key_mark.file, c->key_mark.line,
                       c->key_mark.col);
                break;
            }
        }
        v->key = key;
        v->key_mark = k->mark;
        append(n, &tail, v);
    }
    if (a) L->anchors[ai].done = true;
    return n;
}

/* Takes ev (frees it). NULL when reading must stop. */
static cfg_node *parse_node(loader *L, struct fy_event *ev, bool is_key, int depth)
{
    cfg_node *n = NULL;
    if (depth > MAX_DEPTH) {
        cfg_mark m = mark_of(L, ev);
        lerror(L, &m, "the config is nested more than %d levels deep", MAX_DEPTH);
        L->fatal = true;
        free_event(L, ev);
        return NULL;
    }
    switch (ev->type) {
    case FYET_SCALAR: n = parse_scalar(L, ev, is_key); break;
    case FYET_ALIAS: n = parse_alias(L, ev); break;
    case FYET_SEQUENCE_START: n = parse_seq(L, ev, depth); break;
    case FYET_MAPPING_START: n = parse_map(L, ev, depth); break;
    default: {
        cfg_mark m = mark_of(L, ev);
        lerror(L, &m, "unexpected YAML event %s", fy_event_type_get_text(ev->type));
        L->fatal = true;
        break;
    }
    }
    free_event(L, ev);
    return n;
}

static void diag_output(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    /* Errors are collected, never printed. */
    (void)diag;
    (void)user;
    (void)buf;
    (void)len;
}

/* The syntax errors libfyaml collected, one line each. */
static size_t report_diag(loader *L)
{
    size_t n = 0;
    void *it = NULL;
    struct fy_diag_error *de;
    while ((de = fy_diag_errors_iterate(L->diag, &it)) != NULL) {
        if (de->type < FYET_ERROR) continue;
        cfg_mark m = {L->file, de->line > 0 ? (uint32_t)de->line : 0,
                      de->column > 0 ? (uint32_t)de->column : 0};
        lerror(L, &m, "invalid YAML: %s", cfg_esc(L->cx, de->msg ? de->msg : "syntax error", 200));
        n++;
    }
    return n;
}

/* Length of the valid UTF-8 character at s (at most n bytes), 0 if
 * invalid: overlong forms, surrogates and code points past U+10FFFF too. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) return 1;
    size_t len;
    uint32_t cp;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
        cp = s[0] & 0x1F;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        cp = s[0] & 0x0F;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* The config must be UTF-8 text without NUL bytes. Checked before
 * libfyaml sees it: libfyaml 0.7.12 loops forever on some invalid UTF-8
 * (a '%' directive followed by a stray continuation byte). */
static bool check_text(cfg_ctx *cx, const char *file, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    uint32_t line = 1, col = 1;
    for (size_t i = 0; i < len;) {
        size_t k = s[i] ? utf8_len(s + i, len - i) : 0;
        if (k == 0) {
            cfg_mark m = {file, line, col};
            cfg_error_at(cx, &m,
                         s[i] ? "invalid UTF-8 (byte 0x%02x): the config must be UTF-8 text"
                              : "a NUL byte (0x%02x): the config must be UTF-8 text",
                         s[i]);
            return false;
        }
        if (s[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
        i += k;
    }
    return true;
}

/* Parse text (len bytes) named file into a tree; errors go to cx. The
 * root is a map (an empty one for an empty file), or NULL on errors. */
static cfg_node *parse_text(cfg_ctx *cx, const char *file, const char *text, size_t len)
{
    loader L = {.cx = cx, .file = cfg_strdup(cx, file), .text = text, .len = len};
    L.last = (cfg_mark){L.file, 1, 1};
    size_t errs_before = cx->errs.n;
    (void)cfg_alloc(cx, 0); /* makes cx->mem */
    if (!check_text(cx, L.file, text, len)) return NULL;

    struct fy_diag_cfg dc;
    fy_diag_cfg_default(&dc);
    dc.fp = NULL;
    dc.output_fn = diag_output;
    dc.colorize = false;
    L.diag = fy_diag_create(&dc);
    if (!L.diag) {
        cfg_error_at(cx, &L.last, "cannot start the YAML parser");
        return NULL;
    }
    fy_diag_set_collect_errors(L.diag, true);
    struct fy_parse_cfg pc = {.flags = FYPCF_QUIET, .diag = L.diag};
    L.fyp = fy_parser_create(&pc);
    if (!L.fyp || fy_parser_set_string(L.fyp, text, len) != 0) {
        cfg_error_at(cx, &L.last, "cannot start the YAML parser");
        if (L.fyp) fy_parser_destroy(L.fyp);
        fy_diag_destroy(L.diag);
        return NULL;
    }

    cfg_node *root = NULL;
    bool have_doc = false;
    struct fy_event *ev;
    while ((ev = next_event(&L)) != NULL) {
        enum fy_event_type t = ev->type;
        if (t == FYET_STREAM_END) {
            free_event(&L, ev);
            break;
        }
        if (t == FYET_DOCUMENT_START) {
            cfg_mark m = mark_of(&L, ev);
            bool has_mark = fy_event_start_mark(ev) != NULL;
            free_event(&L, ev);
            if (have_doc) {
                /* A document after "..." may start without "---": point at
                 * its first value then. */
                if (!has_mark) {
                    struct fy_event *e2 = next_event(&L);
                    if (e2) m = mark_of(&L, e2);
                    free_event(&L, e2);
                }
                cfg_error_at(cx, &m,
                             "a second YAML document is not allowed: the config is one document");
                L.fatal = true;
                break;
            }
            have_doc = true;
            continue;
        }
        if (t == FYET_DOCUMENT_END || t == FYET_STREAM_START) {
            free_event(&L, ev);
            continue;
        }
        root = parse_node(&L, ev, false, 0);
        if (!root) break;
    }
    /* A syntax error ends the events early: libfyaml says why. */
    if (fy_parser_get_stream_error(L.fyp) || (L.fatal && cx->errs.n == errs_before)) {
        if (report_diag(&L) == 0 && cx->errs.n == errs_before)
            cfg_error_at(cx, &L.last, "invalid YAML");
        root = NULL;
    }
    fy_parser_destroy(L.fyp);
    fy_diag_destroy(L.diag);
    free(L.anchors);

    if (cx->errs.n != errs_before) return NULL;
    if (!root || root->kind == CFG_NULL) {
        /* An empty file (only comments, say) is an empty map. */
        cfg_mark m = root ? root->mark : (cfg_mark){L.file, 1, 1};
        root = cfg_alloc(cx, sizeof *root);
        root->kind = CFG_MAP;
        root->mark = m;
        return root;
    }
    if (root->kind != CFG_MAP) {
        cfg_error_at(cx, &root->mark, "expected a map at the top level, got %s",
                     cfg_kind_name(root));
        return NULL;
    }
    return root;
}

/* ------------------------------------------------------------------ */
/* Files, overlay, merge                                               */

/* Read a whole file. NULL with errno set on failure. */
static char *read_file(const char *path, size_t *lenp)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        errno = ENOMEM;
        return NULL;
    }
    errno = 0;
    for (;;) {
        if (len + 1 >= cap) {
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = b;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    int err = ferror(f) ? (errno ? errno : EIO) : 0; /* EISDIR for a directory */
    fclose(f);
    if (err) {
        free(buf);
        errno = err;
        return NULL;
    }
    buf[len] = '\0';
    *lenp = len;
    return buf;
}

static cfg_node *load_file(cfg_ctx *cx, const char *path, bool optional, bool *missing)
{
    size_t len = 0;
    char *text = read_file(path, &len);
    if (!text) {
        int err = errno;
        if (missing) *missing = err == ENOENT;
        if (optional && err == ENOENT) return NULL;
        cfg_mark m = {cfg_strdup(cx, path), 0, 0};
        cfg_error_at(cx, &m, "cannot read the config: %s", strerror(err));
        return NULL;
    }
    cfg_node *root = parse_text(cx, path, text, len);
    free(text);
    return root;
}

/* "dir/vie.yaml" + "prod" -> "dir/vie.prod.yaml"; no .yaml/.yml: append. */
static char *overlay_path(cfg_ctx *cx, const char *path, const char *env)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    if (dot && dot != base && (strcmp(dot, ".yaml") == 0 || strcmp(dot, ".yml") == 0))
        return cfg_printf(cx, "%.*s.%s%s", (int)(dot - path), path, env, dot);
    return cfg_printf(cx, "%s.%s", path, env);
}

/* Merge over into base (both maps): maps merge key by key, anything else
 * is replaced whole, keeping the overlay's marks. */
static void merge(cfg_node *base, cfg_node *over)
{
    cfg_node *tail = base->first;
    while (tail && tail->next)
        tail = tail->next;
    cfg_node *m = over->first;
    while (m) {
        cfg_node *next = m->next;
        cfg_node *prev = NULL, *b = base->first;
        while (b && strcmp(b->key, m->key) != 0) {
            prev = b;
            b = b->next;
        }
        if (b && b->kind == CFG_MAP && m->kind == CFG_MAP) {
            merge(b, m);
        } else if (b) {
            m->next = b->next;
            if (prev)
                prev->next = m;
            else
                base->first = m;
            if (tail == b) tail = m;
        } else {
            m->next = NULL;
            if (tail)
                tail->next = m;
            else
                base->first = m;
            tail = m;
            base->n++;
        }
        m = next;
    }
}

static bool env_name_ok(const char *env)
{
    if (!*env || strlen(env) > 64) return false;
    for (const char *p = env; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

int cfg_load(cfg_ctx *cx, const char *path, const char *env, bool strict)
{
    memset(cx, 0, sizeof *cx);
    if (!path || !*path) {
        cfg_error_at(cx, NULL, "no config file given");
        return -1;
    }
    cfg_node *root = load_file(cx, path, false, NULL);
    cx->files[cx->n_files++] = cfg_strdup(cx, path);
    if (env && *env) {
        if (!env_name_ok(env)) {
            cfg_error_at(cx, NULL,
                         "invalid environment name \"%s\": expected letters, digits, '_' or '-'",
                         env);
        } else {
            char *opath = overlay_path(cx, path, env);
            bool missing = false;
            cfg_node *over = load_file(cx, opath, !strict, &missing);
            if (!missing) cx->files[cx->n_files++] = opath;
            if (root && over) merge(root, over);
        }
    }
    if (cx->errs.n || !root) {
        if (!cx->errs.n) cfg_error_at(cx, NULL, "cannot load %s", path);
        cx->root = NULL;
        return -1;
    }
    cx->root = root;
    return 0;
}

int cfg_load_text(cfg_ctx *cx, const char *name, const char *text)
{
    memset(cx, 0, sizeof *cx);
    if (!name) name = "<config>";
    cx->files[cx->n_files++] = cfg_strdup(cx, name);
    if (!text) {
        cfg_error_at(cx, NULL, "no config text given");
        return -1;
    }
    cfg_node *root = parse_text(cx, name, text, strlen(text));
    if (!root || cx->errs.n) return -1;
    cx->root = root;
    return 0;
}
