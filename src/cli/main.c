/* vie: the standalone server. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/default_app.h"
#include "cli/default_config.h"
#include "config/build.h"
#include "vie/vie.h"
#include "vie/vie_mw.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_CONFIG = 3 };

static const char usage[] =
    "Usage: vie <command> [options]\n"
    "\n"
    "Commands:\n"
    "  serve [-c FILE]           serve FILE's routes and pipeline; without -c, the\n"
    "                            embedded default config (see `vie config default`)\n"
    "  check -c FILE             validate FILE and print the pipeline of every route\n"
    "  pipeline -c FILE [--format text|json|mermaid]\n"
    "                            draw every route's pipeline (default: text)\n"
    "  config explain KEY -c FILE\n"
    "                            the effective value of KEY (\"server.listen\",\n"
    "                            \"middleware.auth.realm\", \"routes.0.path\") and the\n"
    "                            file and line that set it\n"
    "  config default            print the embedded default config\n"
    "\n"
    "Options of every command that reads a config:\n"
    "  -c, --config FILE               the YAML config\n"
    "  -e, --env ENV                   also read FILE's overlay for ENV (vie.yaml ->\n"
    "                                  vie.ENV.yaml, deep-merged over it, later wins);\n"
    "                                  default: $VIE_ENV. A missing overlay is an error.\n"
    "\n"
    "Options of serve (they win over the config's server section):\n"
    "  -l, --listen HOST:PORT          address to listen on (default 127.0.0.1:8080;\n"
    "                                  port 0 picks a free one, logged at start)\n"
    "      --max-connections N         beyond: 503 and close (default 10000)\n"
    "      --max-request-line BYTES    beyond: 414 (default 8192)\n"
    "      --max-header-bytes BYTES    beyond: 431 (default 16384)\n"
    "      --max-headers N             beyond: 431 (default 100)\n"
    "      --max-body BYTES            beyond: 413 (default 16777216)\n"
    "      --keepalive-timeout MS      idle keep-alive connections close (default 60000)\n"
    "      --header-timeout MS         a head must arrive within this (default 10000)\n"
    "      --body-timeout MS           longest pause while reading a body (default 30000)\n"
    "      --write-timeout MS          longest pause of a client that does not read (default "
    "30000)\n"
    "      --max-keepalive-requests N  requests per connection, 0 = no limit (default 0)\n"
    "  -w, --workers N                 worker processes under a supervisor that restarts\n"
    "                                  them; 0 = serve from this one process (default:\n"
    "                                  one per core)\n"
    "      --on-crash recover|exit     a crash signal in a handler: answer 500 and replace\n"
    "                                  the worker after it drains (recover, default), or\n"
    "                                  answer 500 and die at once (exit)\n"
    "      --drain-timeout MS          on stop and reload, in-flight requests get this\n"
    "                                  long to finish (default 10000)\n"
    "      --log-level LEVEL           debug, info, warn, error (default info)\n"
    "      --chaos                     add routes that fail on purpose, for chaos tests:\n"
    "                                  /chaos/sleep?ms=N, /chaos/panic,\n"
    "                                  /chaos/crash?kind=segv|abort (off by default)\n"
    "      --watchdog MS               log a request stuck this long in one layer, with its\n"
    "                                  trail (default 10000)\n"
    "      --debug                     print every route's pipeline at start and serve\n"
    "                                  GET /debug/pipeline and /debug/requests (JSON)\n"
    "\n"
    "  -h, --help            this text\n"
    "  -V, --version         the version\n"
    "\n"
    "Exit status: 0 after a clean stop (SIGINT or SIGTERM) or a valid config,\n"
    "1 when the server cannot start (the log says why, e.g. the address is in\n"
    "use) or a key to explain is not set, 2 on bad usage, 3 when the config is\n"
    "invalid (each error is printed as FILE:LINE:COLUMN: message).\n";

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "vie: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s", usage);
    return EXIT_USAGE;
}

/* A decimal number in [min, max], or -1 (after printing why). */
static int parse_u64(const char *opt, const char *s, unsigned long long min, unsigned long long max,
                     unsigned long long *out)
{
    char *end;
    errno = 0;
    if (!*s || *s == '-' || *s == '+') goto bad;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max) goto bad;
    *out = v;
    return 0;
bad:
    fprintf(stderr, "vie: %s expects a whole number from %llu to %llu, got \"%s\"\n\n%s", opt, min,
            max, s, usage);
    return -1;
}

enum {
    OPT_MAX_CONN = 256,
    OPT_MAX_LINE,
    OPT_MAX_HEADER_BYTES,
    OPT_MAX_HEADERS,
    OPT_MAX_BODY,
    OPT_KEEPALIVE,
    OPT_HEADER_TIMEOUT,
    OPT_BODY_TIMEOUT,
    OPT_WRITE_TIMEOUT,
    OPT_MAX_KA_REQUESTS,
    OPT_LOG_LEVEL,
    OPT_DEBUG,
    OPT_DRAIN,
    OPT_CHAOS,
    OPT_ON_CRASH,
    OPT_WATCHDOG,
};

static const struct option serve_opts[] = {
    {"listen", required_argument, NULL, 'l'},
    {"config", required_argument, NULL, 'c'},
    {"env", required_argument, NULL, 'e'},
    {"max-connections", required_argument, NULL, OPT_MAX_CONN},
    {"max-request-line", required_argument, NULL, OPT_MAX_LINE},
    {"max-header-bytes", required_argument, NULL, OPT_MAX_HEADER_BYTES},
    {"max-headers", required_argument, NULL, OPT_MAX_HEADERS},
    {"max-body", required_argument, NULL, OPT_MAX_BODY},
    {"keepalive-timeout", required_argument, NULL, OPT_KEEPALIVE},
    {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
    {"body-timeout", required_argument, NULL, OPT_BODY_TIMEOUT},
    {"write-timeout", required_argument, NULL, OPT_WRITE_TIMEOUT},
    {"max-keepalive-requests", required_argument, NULL, OPT_MAX_KA_REQUESTS},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"debug", no_argument, NULL, OPT_DEBUG},
    {"workers", required_argument, NULL, 'w'},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN},
    {"chaos", no_argument, NULL, OPT_CHAOS},
    {"on-crash", required_argument, NULL, OPT_ON_CRASH},
    {"watchdog", required_argument, NULL, OPT_WATCHDOG},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* ------------------------------------------------------------------ */
/* The config                                                          */

typedef struct config_args {
    const char *file; /* NULL: the embedded default */
    const char *env;  /* --env, else $VIE_ENV, else NULL */
    bool env_flag;    /* env came from --env, not from the environment */
    int log_level;    /* from the config then --log-level; -1: not set */
} config_args;

/* Is a ("--conf", "--config=x.yaml") the long option name, spelled out or
 * abbreviated as getopt allows (a prefix no other option shares)? Sets
 * *value to what follows '=' (NULL when none). */
static bool long_is(const char *a, const char *name, const char **value)
{
    static const char *const others[] = {"format", "help", NULL};
    if (strncmp(a, "--", 2) != 0 || !a[2]) return false;
    const char *s = a + 2, *eq = strchr(s, '=');
    size_t n = eq ? (size_t)(eq - s) : strlen(s);
    if (!n || strncmp(name, s, n) != 0) return false;
    int matches = 0;
    for (const struct option *o = serve_opts; o->name; o++)
        matches += !strncmp(o->name, s, n);
    for (const char *const *o = others; *o; o++)
        matches += !strncmp(*o, s, n);
    if (matches != 1 && strlen(name) != n) return false; /* ambiguous: getopt refuses it */
    *value = eq ? eq + 1 : NULL;
    return true;
}

/* -c/--config and -e/--env from anywhere in argv, before the options of
 * the command are parsed (the config's server section is the base the
 * command-line options change). 0, or -1 on a missing value. */
static int scan_config_args(int argc, char **argv, config_args *ca)
{
    ca->file = NULL;
    ca->env = getenv("VIE_ENV");
    if (ca->env && !*ca->env) ca->env = NULL;
    ca->env_flag = false;
    ca->log_level = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *value = NULL;
        const char **dst = NULL;
        if (!strcmp(a, "--")) break;
        if (a[0] == '-' && (a[1] == 'c' || a[1] == 'e')) { /* -c FILE, -cFILE */
            dst = a[1] == 'c' ? &ca->file : &ca->env;
            value = a[2] ? a + 2 : NULL;
        } else if (long_is(a, "config", &value)) {
            dst = &ca->file;
        } else if (long_is(a, "env", &value)) {
            dst = &ca->env;
        } else {
            continue;
        }
        if (dst == &ca->env) ca->env_flag = true;
        if (!value) {
            if (i + 1 >= argc) {
                bad_usage("option %s needs a value", a);
                return -1;
            }
            value = argv[++i];
        }
        *dst = value;
    }
    if (ca->env_flag && !ca->file) {
        bad_usage("%s", "--env needs a config (-c FILE) whose overlay it selects");
        return -1;
    }
    if (!ca->file) ca->env = NULL; /* $VIE_ENV has nothing to select in the default */
    return 0;
}

/* Errors in file order: "FILE:LINE:COL: ..." compared by file, then line
 * and column as numbers. */
static int by_position(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    const char *xl = strchr(x, ':'), *yl = strchr(y, ':');
    if (!xl || !yl) return xl ? 1 : yl ? -1 : 0;
    size_t xn = (size_t)(xl - x), yn = (size_t)(yl - y);
    int c = strncmp(x, y, xn < yn ? xn : yn);
    if (c || xn != yn) return c ? c : xn < yn ? -1 : 1;
    char *end;
    unsigned long a1 = strtoul(xl + 1, &end, 10), a2 = *end == ':' ? strtoul(end + 1, NULL, 10) : 0;
    unsigned long b1 = strtoul(yl + 1, &end, 10), b2 = *end == ':' ? strtoul(end + 1, NULL, 10) : 0;
    return a1 != b1 ? (a1 < b1 ? -1 : 1) : a2 != b2 ? (a2 < b2 ? -1 : 1) : 0;
}

/* Stable: equal positions keep the order they were found in. */
typedef struct error_ref {
    const char *line;
    size_t index;
} error_ref;

static int by_position_stable(const void *a, const void *b)
{
    const error_ref *x = a, *y = b;
    int c = by_position(&x->line, &y->line);
    return c ? c : x->index < y->index ? -1 : 1;
}

static void print_config_errors(cfg_ctx *cx, const char *file)
{
    /* In file order (the readers find them in schema order). */
    size_t n = cx->errs.n;
    error_ref *sorted = n ? malloc(n * sizeof *sorted) : NULL;
    if (sorted) {
        for (size_t i = 0; i < n; i++)
            sorted[i] = (error_ref){cx->errs.lines[i], i};
        qsort(sorted, n, sizeof *sorted, by_position_stable);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "%s\n", sorted[i].line);
        free(sorted);
    } else {
        cfg_print_errors(cx, stderr);
    }
    fprintf(stderr, "vie: %s: %zu error%s; nothing was started\n",
            file ? file : "the default config", cx->errs.n, cx->errs.n == 1 ? "" : "s");
}

/* Load the config (or the embedded default) and read its server section
 * into o. EXIT_OK or EXIT_CONFIG (errors printed). */
static int load_config(config_args *ca, cfg_ctx *cx, vie_options *o)
{
    int rc = ca->file ? cfg_load(cx, ca->file, ca->env, ca->env != NULL)
                      : cfg_load_text(cx, "<default config>", default_config_yaml);
    if (rc == 0) config_read_server(cx, o, &ca->log_level);
    if (rc != 0 || cx->errs.n) {
        print_config_errors(cx, ca->file);
        return EXIT_CONFIG;
    }
    return EXIT_OK;
}

/* Build the app the config declares; with the default config, also the
 * C routes it cannot express (POST /echo), and with chaos the routes that
 * fail on purpose. NULL when the config or the pipeline is invalid
 * (errors printed). */
static vie_app *build_app(const config_args *ca, cfg_ctx *cx, const vie_options *o,
                          config_resources *res, bool chaos, const vie_app *previous)
{
    vie_app *app = vie_app_new(o);
    if (!app) {
        fprintf(stderr, "vie: out of memory\n");
        return NULL;
    }
    if (previous) vie_app_inherit(app, previous);
    int errors = config_build(cx, app, res);
    if (errors == 0 && default_app_register(app, !ca->file, chaos) != VIE_OK) {
        cfg_error_at(cx, NULL,
                     "the built-in routes%s conflict with the config's (the log line above "
                     "names them)",
                     chaos ? " of --chaos" : "");
        errors = 1;
    }
    if (errors) {
        print_config_errors(cx, ca->file);
    } else if (vie_app_freeze(app) != VIE_OK) {
        fprintf(stderr,
                "vie: %s: the pipeline is invalid (the log lines above say why); "
                "nothing was started\n",
                ca->file ? ca->file : "the default config");
        errors = 1;
    }
    if (!errors) return app;
    vie_app_free(app);
    config_resources_free(res);
    return NULL;
}

/* The options of serve, over o (from the config). -1 when they are
 * good, else the exit status (after printing why). */
static int parse_serve_flags(int argc, char **argv, vie_options *op, bool *chaos_out,
                             int *log_level)
{
    const struct option *opts = serve_opts;
    vie_options o = *op;
    bool chaos = false;
    int ch;
    optind = 0; /* a full rescan, also on a reload */
    unsigned long long v;
    const unsigned long long ms_max = 24ull * 3600 * 1000;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":l:w:c:e:h", opts, NULL)) != -1) {
        const char *name = argc >= optind && optind > 0 ? argv[optind - 1] : "option";
        switch (ch) {
        case 'l': o.listen = optarg; break;
        case 'c':
        case 'e': break; /* read by scan_config_args */
        case 'h': fputs(usage, stdout); return EXIT_OK;
        case OPT_MAX_CONN:
            if (parse_u64(name, optarg, 1, 1000000, &v)) return EXIT_USAGE;
            o.max_connections = (uint32_t)v;
            break;
        case OPT_MAX_LINE:
            if (parse_u64(name, optarg, 64, 1u << 20, &v)) return EXIT_USAGE;
            o.max_request_line = (uint32_t)v;
            break;
        case OPT_MAX_HEADER_BYTES:
            if (parse_u64(name, optarg, 256, 1u << 20, &v)) return EXIT_USAGE;
            o.max_header_bytes = (uint32_t)v;
            break;
        case OPT_MAX_HEADERS:
            if (parse_u64(name, optarg, 1, 10000, &v)) return EXIT_USAGE;
            o.max_headers = (uint32_t)v;
            break;
        case OPT_MAX_BODY:
            if (parse_u64(name, optarg, 1, 1ull << 40, &v)) return EXIT_USAGE;
            o.max_body = v;
            break;
        case OPT_KEEPALIVE:
            if (parse_u64(name, optarg, 1, ms_max, &v)) return EXIT_USAGE;
            o.keepalive_timeout_ms = (uint32_t)v;
            break;
        case OPT_HEADER_TIMEOUT:
            if (parse_u64(name, optarg, 1, ms_max, &v)) return EXIT_USAGE;
            o.header_timeout_ms = (uint32_t)v;
            break;
        case OPT_BODY_TIMEOUT:
            if (parse_u64(name, optarg, 1, ms_max, &v)) return EXIT_USAGE;
            o.body_timeout_ms = (uint32_t)v;
            break;
        case OPT_WRITE_TIMEOUT:
            if (parse_u64(name, optarg, 1, ms_max, &v)) return EXIT_USAGE;
            o.write_timeout_ms = (uint32_t)v;
            break;
        case OPT_MAX_KA_REQUESTS:
            if (parse_u64(name, optarg, 0, UINT32_MAX, &v)) return EXIT_USAGE;
            o.max_keepalive_requests = (uint32_t)v;
            break;
        case OPT_LOG_LEVEL: {
            static const char *const names[] = {"debug", "info", "warn", "error"};
            int level = -1;
            for (int i = 0; i < 4; i++)
                if (!strcmp(optarg, names[i])) level = i;
            if (level < 0)
                return bad_usage("--log-level expects debug, info, warn or error, got \"%s\"",
                                 optarg);
            *log_level = level; /* applied with the config it belongs to */
            break;
        }
        case 'w':
            if (parse_u64(name, optarg, 0, 256, &v)) return EXIT_USAGE;
            o.workers = (int)v;
            break;
        case OPT_DRAIN:
            if (parse_u64(name, optarg, 1, ms_max, &v)) return EXIT_USAGE;
            o.drain_timeout_ms = (uint32_t)v;
            break;
        case OPT_CHAOS: chaos = true; break;
        case OPT_WATCHDOG:
            if (parse_u64(name, optarg, 1, ms_max, &v)) return EXIT_USAGE;
            o.watchdog_ms = (uint32_t)v;
            break;
        case OPT_ON_CRASH:
            if (!strcmp(optarg, "recover"))
                o.on_crash = VIE_ON_CRASH_RECOVER;
            else if (!strcmp(optarg, "exit"))
                o.on_crash = VIE_ON_CRASH_EXIT;
            else
                return bad_usage("--on-crash expects recover or exit, got \"%s\"", optarg);
            break;
        case OPT_DEBUG:
            o.debug = true;
            o.debug_endpoints = true;
            break;
        case ':': return bad_usage("option %s needs a value", argv[optind - 1]);
        default: return bad_usage("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument \"%s\"", argv[optind]);
    *op = o;
    *chaos_out = chaos;
    return -1;
}

/* What SIGHUP needs to build the next app: the command line again. */
typedef struct reloader {
    int argc;
    char **argv;
    const vie_app *current; /* the app the next one inherits state from */
} reloader;

/* An app built by a reload frees its config with itself. */
typedef struct owned_config {
    cfg_ctx cx;
    config_resources res;
} owned_config;

static void free_owned_config(vie_app *app, void *loop, void *arg)
{
    (void)app;
    (void)loop;
    owned_config *oc = arg;
    config_resources_free(&oc->res);
    cfg_free(&oc->cx);
    free(oc);
}

/* The defaults of serve: one worker per core unless told otherwise. */
static void serve_defaults(vie_options *o)
{
    vie_options_init(o);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o->workers = cores > 0 ? (int)cores : 1;
}

/* SIGHUP: read the config again, with the same flags over it. */
static vie_app *reload_app(void *arg)
{
    reloader *r = arg;
    config_args ca;
    scan_config_args(r->argc, r->argv, &ca);
    vie_log(VIE_LOG_INFO, "SIGHUP: reading %s again", ca.file ? ca.file : "the default config");
    owned_config *oc = calloc(1, sizeof *oc);
    if (!oc) return NULL;
    vie_options o;
    serve_defaults(&o);
    bool chaos = false;
    vie_app *app = NULL;
    if (load_config(&ca, &oc->cx, &o) == EXIT_OK &&
        parse_serve_flags(r->argc, r->argv, &o, &chaos, &ca.log_level) == -1)
        app = build_app(&ca, &oc->cx, &o, &oc->res, chaos, r->current);
    if (!app || vie_app_hook_add(app, VIE_EV_APP_FREE, free_owned_config, oc) != VIE_OK) {
        if (app) vie_app_free(app);
        config_resources_free(&oc->res);
        cfg_free(&oc->cx);
        free(oc);
        return NULL;
    }
    r->current = app; /* frozen already: the supervisor will take it */
    /* Accepted: now its log level applies (the default when it has none). */
    vie_log_set_level(ca.log_level >= 0 ? (vie_log_level)ca.log_level : VIE_LOG_INFO);
    return app;
}

static int cmd_serve(int argc, char **argv)
{
    config_args ca;
    if (scan_config_args(argc, argv, &ca) != 0) return EXIT_USAGE;
    vie_options o;
    serve_defaults(&o);
    cfg_ctx cx;
    int rc = load_config(&ca, &cx, &o);
    bool chaos = false;
    if (rc == EXIT_OK) rc = parse_serve_flags(argc, argv, &o, &chaos, &ca.log_level);
    if (rc != -1) {
        cfg_free(&cx);
        return rc;
    }
    if (ca.log_level >= 0) vie_log_set_level((vie_log_level)ca.log_level);
    config_resources res = {0};
    vie_app *app = build_app(&ca, &cx, &o, &res, chaos, NULL);
    if (!app) {
        cfg_free(&cx);
        return EXIT_CONFIG;
    }
    reloader r = {argc, argv, app};
    vie_app_on_reload(app, reload_app, &r);
    rc = vie_app_run(app);
    vie_app_free(app);
    config_resources_free(&res);
    cfg_free(&cx);
    return rc == VIE_OK ? EXIT_OK : EXIT_RUNTIME;
}

/* ------------------------------------------------------------------ */
/* check, pipeline, config                                             */

/* The options of check and pipeline: -c, -e (scanned before) and
 * --format. 0, or EXIT_USAGE after printing why. */
static int describe_options(int argc, char **argv, vie_format *format)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"env", required_argument, NULL, 'e'},
        {"format", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, ":c:e:f:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
        case 'e': break;
        case 'f':
            if (!format) return bad_usage("unknown option %s", "--format");
            if (!strcmp(optarg, "text"))
                *format = VIE_FORMAT_TEXT;
            else if (!strcmp(optarg, "json"))
                *format = VIE_FORMAT_JSON;
            else if (!strcmp(optarg, "mermaid"))
                *format = VIE_FORMAT_MERMAID;
            else
                return bad_usage("--format expects text, json or mermaid, got \"%s\"", optarg);
            break;
        case 'h': fputs(usage, stdout); return -1;
        case ':': return bad_usage("option %s needs a value", argv[optind - 1]);
        default: return bad_usage("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument \"%s\"", argv[optind]);
    return 0;
}

/* vie check (print == false: a summary and the text pipeline) and vie
 * pipeline (the drawing alone, for piping into a file). */
static int cmd_describe(int argc, char **argv, bool drawing)
{
    config_args ca;
    vie_format format = VIE_FORMAT_TEXT;
    if (scan_config_args(argc, argv, &ca) != 0) return EXIT_USAGE;
    int rc = describe_options(argc, argv, drawing ? &format : NULL);
    if (rc != 0) return rc < 0 ? EXIT_OK : rc;
    if (!drawing && !ca.file) return bad_usage("%s", "check needs a config: vie check -c FILE");
    vie_options o;
    vie_options_init(&o);
    cfg_ctx cx;
    rc = load_config(&ca, &cx, &o);
    if (rc != EXIT_OK) {
        cfg_free(&cx);
        return rc;
    }
    if (ca.log_level >= 0) vie_log_set_level((vie_log_level)ca.log_level);
    config_resources res = {0};
    vie_app *app = build_app(&ca, &cx, &o, &res, false, NULL);
    if (!app) {
        cfg_free(&cx);
        return EXIT_CONFIG;
    }
    char *text = vie_app_describe(app, format);
    if (!text) {
        rc = EXIT_CONFIG;
    } else {
        if (!drawing)
            printf("%s: valid%s%s%s\n\n", ca.file, ca.env ? " (with the overlay for env \"" : "",
                   ca.env ? ca.env : "", ca.env ? "\")" : "");
        fputs(text, stdout);
    }
    free(text);
    vie_app_free(app);
    config_resources_free(&res);
    cfg_free(&cx);
    return rc;
}

/* Every scalar under n as "path = value    # file:line:col". */
static void explain_node(const cfg_node *n, char *path, size_t len, size_t cap)
{
    if (n->kind == CFG_MAP || n->kind == CFG_SEQ) {
        size_t i = 0;
        if (!n->first)
            printf("%s = %s    # %s:%u:%u\n", path, n->kind == CFG_MAP ? "{}" : "[]", n->mark.file,
                   n->mark.line, n->mark.col);
        for (const cfg_node *c = n->first; c; c = c->next, i++) {
            int w = n->kind == CFG_MAP ? snprintf(path + len, cap - len, ".%s", c->key)
                                       : snprintf(path + len, cap - len, ".%zu", i);
            if (w < 0 || (size_t)w >= cap - len) continue;
            explain_node(c, path, len + (size_t)w, cap);
            path[len] = '\0';
        }
        return;
    }
    printf("%s = %s    # %s:%u:%u\n", path, n->kind == CFG_NULL ? "null" : n->text, n->mark.file,
           n->mark.line, n->mark.col);
}

static int cmd_config(int argc, char **argv)
{
    if (argc < 2) return bad_usage("%s", "config needs a subcommand: explain KEY or default");
    if (!strcmp(argv[1], "default")) {
        if (argc > 2) return bad_usage("unexpected argument \"%s\"", argv[2]);
        fputs(default_config_yaml, stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "explain") != 0)
        return bad_usage("unknown config subcommand \"%s\" (explain, default)", argv[1]);
    config_args ca;
    if (scan_config_args(argc - 1, argv + 1, &ca) != 0) return EXIT_USAGE;
    /* One operand, KEY, among -c FILE and -e ENV (read by scan_config_args). */
    const char *key = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-c") || !strcmp(a, "--config") || !strcmp(a, "-e") || !strcmp(a, "--env"))
            i++;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return EXIT_OK;
        } else if (a[0] == '-' && strncmp(a, "--config=", 9) && strncmp(a, "--env=", 6))
            return bad_usage("unknown option %s", a);
        else if (a[0] != '-' && key)
            return bad_usage("unexpected argument \"%s\"", a);
        else if (a[0] != '-')
            key = a;
    }
    int rc;
    if (!key) return bad_usage("%s", "config explain needs a KEY, e.g. server.listen");
    cfg_ctx cx;
    rc = ca.file ? cfg_load(&cx, ca.file, ca.env, ca.env != NULL)
                 : cfg_load_text(&cx, "<default config>", default_config_yaml);
    if (rc != 0 || cx.errs.n) {
        print_config_errors(&cx, ca.file);
        cfg_free(&cx);
        return EXIT_CONFIG;
    }
    const cfg_node *n = cfg_find(cx.root, key);
    if (!n) {
        fprintf(stderr, "vie: %s is not set in %s%s%s: Vie's default applies\n", key,
                ca.file ? ca.file : "the default config", ca.env ? " or its overlay for " : "",
                ca.env ? ca.env : "");
        cfg_free(&cx);
        return EXIT_RUNTIME;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s", key);
    explain_node(n, path, strlen(path), sizeof path);
    cfg_free(&cx);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) return bad_usage("%s", "a command is needed");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        printf("vie %s\n", VIE_VERSION);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "check")) return cmd_describe(argc - 1, argv + 1, false);
    if (!strcmp(cmd, "pipeline")) return cmd_describe(argc - 1, argv + 1, true);
    if (!strcmp(cmd, "config")) return cmd_config(argc - 1, argv + 1);
    if (cmd[0] == '-') return bad_usage("unknown option %s", cmd);
    return bad_usage("unknown command \"%s\"", cmd);
}
