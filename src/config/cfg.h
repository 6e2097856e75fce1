/* The YAML config as a tree with positions, and typed readers over it.
 *
 * cfg_load parses vie.yaml and its overlay vie.<env>.yaml (libfyaml),
 * substitutes ${VAR} and ${VAR:-default} in scalar values (quoted ones
 * too; not in keys; "$${" is a literal "${"; the default applies when VAR
 * is unset or empty; an unset VAR without a default is an error), and
 * deep-merges the overlay into the base: maps merge key by key, anything
 * else is replaced; every node keeps the file, line and column that set
 * it. Refused: duplicate keys, a top level that is not a map, more than
 * one document. Anchors and aliases are expanded (an alias gets a copy of
 * the anchored value, marked where the alias is); "<<" merge keys are not
 * special. An empty file is an empty map. The text must be UTF-8 without
 * NUL bytes (checked first: libfyaml 0.7.12 can hang on invalid UTF-8).
 *
 * Readers (cfg_get_*) read a map's members by key, range-check them, and
 * record errors at the value's position ("vie.yaml:12:14: ..."). Keys a
 * reader never asked for are errors too, with a "did you mean" among the
 * keys it did ask for (cfg_params_finish): the readers are the schema.
 */
#ifndef VIE_CONFIG_CFG_H
#define VIE_CONFIG_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum cfg_kind {
    CFG_NULL = 0, /* "~", "null" or an empty value */
    CFG_SCALAR,
    CFG_MAP,
    CFG_SEQ,
} cfg_kind;

typedef struct cfg_mark {
    const char *file; /* as given on the command line */
    uint32_t line;    /* 1-based */
    uint32_t col;     /* 1-based */
} cfg_mark;

typedef struct cfg_node cfg_node;
struct cfg_node {
    cfg_kind kind;
    cfg_mark mark;     /* where the value starts (in the file that set it) */
    cfg_mark key_mark; /* a map member: where its key is */
    const char *key;   /* a map member: its key; NULL otherwise */
    const char *text;  /* CFG_SCALAR: the value after ${VAR} substitution; CFG_NULL: NULL */
    bool quoted;       /* a quoted scalar: always a string */
    cfg_node *first;   /* CFG_MAP members / CFG_SEQ items, in order */
    cfg_node *next;    /* next sibling */
    size_t n;          /* number of children */
};

/* Errors found so far, each a full line "FILE:LINE:COL: message". */
typedef struct cfg_errors {
    char **lines;
    size_t n, cap;
} cfg_errors;

/* The loaded documents, the memory of every node and string, and the
 * errors. Lives as long as anything built from it (the app). */
typedef struct cfg_ctx {
    cfg_node *root; /* a CFG_MAP; NULL when loading failed */
    cfg_errors errs;
    const char *files[2]; /* the base and the overlay actually loaded */
    size_t n_files;
    struct cfg_mem *mem; /* private */
} cfg_ctx;

/* Load path and, if env is set, the overlay next to it (for "vie.yaml"
 * and env "prod": "vie.prod.yaml"; a path not ending in .yaml/.yml gets
 * ".prod" appended; a missing overlay is an error only when env was given
 * explicitly, i.e. strict is true). Returns 0, or -1 with errors in
 * cx->errs. cx is always initialised (any old content is not freed):
 * call cfg_free, also after a failure. */
int cfg_load(cfg_ctx *cx, const char *path, const char *env, bool strict);
/* The same from text in memory (the embedded default config), named name
 * in messages. */
int cfg_load_text(cfg_ctx *cx, const char *name, const char *text);
/* Safe on a failed load, on a zeroed cfg_ctx, and twice. */
void cfg_free(cfg_ctx *cx);

/* Record an error at m (NULL: no position; line 0: "FILE: message").
 * printf-style. */
void cfg_error_at(cfg_ctx *cx, const cfg_mark *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Write every error to f, one per line. */
void cfg_print_errors(const cfg_ctx *cx, void *file /* FILE * */);

/* Memory that lives as long as cx, zeroed (aborts when out of memory:
 * config is read at startup). A zeroed cfg_ctx may be used. */
void *cfg_alloc(cfg_ctx *cx, size_t size);
char *cfg_strdup(cfg_ctx *cx, const char *s);

/* The member of map called key, or NULL. */
const cfg_node *cfg_member(const cfg_node *map, const char *key);
/* Find a node by a dotted path: "server.listen", "routes.2.path" (items of
 * a sequence by 0-based index, or by their "name" member, or "type" when
 * they have no name, or their "path" member: "middleware.auth.realm",
 * "routes./hello.timeout"; the first item that matches). Keys may hold
 * dots themselves. NULL when absent. */
const cfg_node *cfg_find(const cfg_node *root, const char *path);
/* A short description of a node's kind for messages: "a map", "a list",
 * "a string", "nothing". */
const char *cfg_kind_name(const cfg_node *n);

/* ------------------------------------------------------------------ */
/* Typed readers over one map                                          */

#define CFG_MAX_KNOWN 64

typedef struct cfg_params {
    cfg_ctx *cx;
    const cfg_node *map;              /* NULL or CFG_NULL: every key is absent */
    const cfg_mark *mark;             /* where to point errors about missing keys */
    const char *what;                 /* 'middleware "auth"': prefixes every message (copied) */
    const char *prefix;               /* sub readers: "timeouts." before keys in messages */
    const char *known[CFG_MAX_KNOWN]; /* keys asked for: did-you-mean candidates */
    size_t n_known;
    int errors; /* errors recorded through this reader */
} cfg_params;

/* Read the members of map (which must be a map or NULL: anything else is
 * an error "expected a map, got ..."). what names the owner in messages
 * (NULL: none, e.g. the top level). */
void cfg_params_init(cfg_params *p, cfg_ctx *cx, const cfg_node *map, const char *what);
/* A nested map: sub reads the member key of p (absent: every key of sub
 * is absent; not a map: an error counted in p). Messages of sub name its
 * keys "key.subkey". */
void cfg_params_sub(cfg_params *p, const char *key, cfg_params *sub);
/* Every member that no reader asked for is an error: 'unknown key
 * "realn" in middleware "auth"; did you mean "realm"?' Returns the
 * number of errors recorded through p (sub readers count on their own). */
int cfg_params_finish(cfg_params *p);
/* An error about key (at its value, or at the map when absent). */
void cfg_error(cfg_params *p, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same about the item-th entry of key's list (a wrong CIDR among five
 * is pointed at, not the list); at the key when it is not a list. */
void cfg_error_item(cfg_params *p, const char *key, int item, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Each reader: absent -> *out = def, returns false; present and valid ->
 * *out set, returns true; present and invalid -> error recorded ("key
 * \"port\": expected an integer from 1 to 65535, got \"80x\""), *out = def,
 * returns false. A key may be required: cfg_require(p, key) errors when
 * it is absent. A null value (~, null, nothing) reads as absent, so an
 * overlay can reset a key to its default.
 * Booleans: true/false/yes/no/on/off, unquoted. Integers: decimal digits
 * ('-' for cfg_get_int), unquoted. Doubles: finite decimals, unquoted.
 * Quoted values are strings, so "8080" is not an integer; durations,
 * sizes, percentages and enums are read from strings and may be quoted. */
bool cfg_has(cfg_params *p, const char *key);
bool cfg_require(cfg_params *p, const char *key);
bool cfg_get_str(cfg_params *p, const char *key, const char **out, const char *def);
bool cfg_get_bool(cfg_params *p, const char *key, bool *out, bool def);
bool cfg_get_u64(cfg_params *p, const char *key, uint64_t *out, uint64_t min, uint64_t max,
                 uint64_t def);
bool cfg_get_u32(cfg_params *p, const char *key, uint32_t *out, uint32_t min, uint32_t max,
                 uint32_t def);
bool cfg_get_int(cfg_params *p, const char *key, int *out, int min, int max, int def);
bool cfg_get_double(cfg_params *p, const char *key, double *out, double min, double max,
                    double def);
/* A percentage 0..100: 5, 2.5 or "5%". */
bool cfg_get_percent(cfg_params *p, const char *key, double *out, double def);
/* A duration in milliseconds: an integer (ms) or "250ms", "2s", "1.5s",
 * "5m", "1h" (fractions round to the nearest ms). Range errors read
 * "expected a duration from 1ms to 1h". */
bool cfg_get_ms(cfg_params *p, const char *key, uint32_t *out, uint32_t min, uint32_t max,
                uint32_t def);
/* A size in bytes: an integer or "512", "16k", "16KiB", "1MB", "1MiB",
 * "1G", "1.5MiB", "512B" (k/K/KiB = 1024, KB = 1000, likewise M, G). */
bool cfg_get_bytes(cfg_params *p, const char *key, uint64_t *out, uint64_t min, uint64_t max,
                   uint64_t def);
/* One of names (NULL-terminated); *out is its index. The error lists the
 * names and suggests the closest. */
bool cfg_get_enum(cfg_params *p, const char *key, int *out, const char *const *names, int def);
/* A list of strings (a single string is a list of one), NULL-terminated,
 * in cx memory. *out = NULL when absent. */
bool cfg_get_strv(cfg_params *p, const char *key, const char *const **out);
/* Any node, marked as read; NULL when absent or null. */
const cfg_node *cfg_get_node(cfg_params *p, const char *key);

/* The closest of the first n names (fewer if a NULL comes first) to s by
 * Damerau-Levenshtein distance, or NULL when none is within max(1,
 * strlen(s) / 3), i.e. a likely typo. */
const char *cfg_closest(const char *s, const char *const *names, size_t n);

#endif
