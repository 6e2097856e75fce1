/* libFuzzer target for the YAML config loader and its typed readers: any
 * bytes must load or fail with error lines (one line each, never a crash,
 * a leak or a runaway), a loaded tree must be well formed, and every
 * reader must cope with every value it is pointed at. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libfyaml 0.7.12 itself leaks 4 KiB in fy_token_get_text for a
 * single-quoted scalar with five '' escapes in a row (""; the
 * same without any of our code). Its frames carry no symbols, so the
 * suppression has to name the whole library: the ASan unit tests are
 * what check that the loader frees its parser, events and diag. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libfyaml.so\n";
}

/* Readers on a few thousand values are plenty; aliases can make 200000. */
#define MAX_VISITS 2000

static const char *const modes[] = {"recover", "exit", NULL};

static void check_node(const cfg_node *n, bool in_map)
{
    if (!n->mark.file || n->mark.line == 0 || n->mark.col == 0) abort();
    if (in_map != (n->key != NULL)) abort();
    if (in_map && (n->key_mark.line == 0 || n->key_mark.col == 0)) abort();
    if ((n->kind == CFG_SCALAR) != (n->text != NULL)) abort();
    if ((n->kind == CFG_SCALAR || n->kind == CFG_NULL) && (n->first || n->n)) abort();
    size_t count = 0;
    for (const cfg_node *c = n->first; c; c = c->next)
        count++;
    if (count != n->n) abort();
}

/* Every reader on every key of map; nested maps through cfg_params_sub
 * and on their own. */
static void walk(cfg_ctx *cx, const cfg_node *root, const cfg_node *n, int *visits)
{
    if (++*visits > MAX_VISITS) return;
    check_node(n, n->key != NULL);
    if (n->kind == CFG_SEQ) {
        for (const cfg_node *c = n->first; c; c = c->next) {
            check_node(c, false);
            walk(cx, root, c, visits);
        }
        return;
    }
    cfg_params p;
    cfg_params_init(&p, cx, n, "fuzz \"x\""); /* a scalar here is an error, by design */
    if (n->kind != CFG_MAP) {
        (void)cfg_params_finish(&p);
        return;
    }
    for (const cfg_node *c = n->first; c; c = c->next) {
        check_node(c, true);
        const char *k = c->key, *s;
        const char *const *v;
        bool b;
        uint64_t u64;
        uint32_t u32;
        int i;
        double d;
        (void)cfg_has(&p, k);
        (void)cfg_get_str(&p, k, &s, NULL);
        (void)cfg_get_bool(&p, k, &b, false);
        (void)cfg_get_u64(&p, k, &u64, 0, UINT64_MAX, 0);
        (void)cfg_get_u64(&p, k, &u64, 1, 1000, 1);
        (void)cfg_get_u32(&p, k, &u32, 1, 65535, 1);
        (void)cfg_get_int(&p, k, &i, -5, 5, 0);
        (void)cfg_get_double(&p, k, &d, 0, 1, 0);
        (void)cfg_get_percent(&p, k, &d, 0);
        (void)cfg_get_ms(&p, k, &u32, 1, 3600000, 1);
        (void)cfg_get_ms(&p, k, &u32, 0, UINT32_MAX, 1);
        (void)cfg_get_bytes(&p, k, &u64, 1, 16 << 20, 1);
        (void)cfg_get_enum(&p, k, &i, modes, 0);
        if (cfg_get_strv(&p, k, &v)) {
            size_t m = 0;
            while (v[m])
                m++;
            if (c->kind == CFG_SEQ && m != c->n) abort();
        }
        (void)cfg_get_node(&p, k);
        (void)cfg_find(root, k);
        if (c->kind == CFG_MAP) {
            cfg_params sub;
            cfg_params_sub(&p, k, &sub);
            (void)cfg_require(&sub, "listen");
            (void)cfg_get_ms(&sub, "request", &u32, 1, 60000, 1);
            (void)cfg_params_finish(&sub);
        }
        if (c->kind == CFG_MAP || c->kind == CFG_SEQ) walk(cx, root, c, visits);
    }
    cfg_error(&p, NULL, "checked");
    (void)cfg_require(&p, "name");
    (void)cfg_params_finish(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool env_set;
    if (!env_set) {
        /* fixed variables so ${...} has something to find */
        setenv("VIE_FUZZ_A", "value", 1);
        setenv("VIE_FUZZ_EMPTY", "", 1);
        env_set = true;
    }
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = '\0';

    cfg_ctx cx;
    int rc = cfg_load_text(&cx, "fuzz.yaml", text);
    if (rc == 0) {
        if (!cx.root || cx.root->kind != CFG_MAP || cx.errs.n != 0) abort();
        int visits = 0;
        walk(&cx, cx.root, cx.root, &visits);
        (void)cfg_find(cx.root, "server.timeouts.request");
        (void)cfg_find(cx.root, "middleware.auth.realm");
        (void)cfg_find(cx.root, "routes.0.path");
    } else {
        if (rc != -1 || cx.root || cx.errs.n == 0) abort();
    }
    /* every error is one line that starts with the name or is positionless */
    for (size_t e = 0; e < cx.errs.n; e++) {
        const char *line = cx.errs.lines[e];
        if (!line || !*line || strchr(line, '\n')) abort();
    }
    cfg_free(&cx);
    cfg_free(&cx);
    free(text);
    return 0;
}
