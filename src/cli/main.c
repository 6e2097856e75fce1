/* vie: the standalone server. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/default_app.h"
#include "vie/vie.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

static const char usage[] =
    "Usage: vie <command> [options]\n"
    "\n"
    "Commands:\n"
    "  serve                 serve the embedded default app\n"
    "\n"
    "Options of serve:\n"
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
    "Exit status: 0 after a clean stop (SIGINT or SIGTERM), 1 when the server\n"
    "cannot start (the log says why, e.g. the address is in use), 2 on bad usage.\n";

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

static int cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
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
    vie_options o;
    vie_options_init(&o);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o.workers = cores > 0 ? (int)cores : 1; /* one per core unless told otherwise */
    bool chaos = false;
    int ch;
    unsigned long long v;
    const unsigned long long ms_max = 24ull * 3600 * 1000;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":l:w:h", opts, NULL)) != -1) {
        const char *name = argc >= optind && optind > 0 ? argv[optind - 1] : "option";
        switch (ch) {
        case 'l': o.listen = optarg; break;
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
            vie_log_set_level((vie_log_level)level);
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

    vie_app *app = vie_app_new(&o);
    if (!app) {
        fprintf(stderr, "vie: out of memory\n");
        return EXIT_RUNTIME;
    }
    int rc = default_app_register(app, chaos);
    if (rc == VIE_OK) rc = vie_app_run(app);
    vie_app_free(app);
    return rc == VIE_OK ? EXIT_OK : EXIT_RUNTIME;
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
    if (cmd[0] == '-') return bad_usage("unknown option %s", cmd);
    return bad_usage("unknown command \"%s\"", cmd);
}
