/* The embedded default config: on a fresh machine `vie serve` shows a
 * pipeline at work, its metrics and its introspection. `vie config
 * default` prints it, as a start for a config of one's own. */
#include "cli/default_config.h"

const char default_config_yaml[] =
    "# The embedded default of `vie serve` (print it with `vie config default`).\n"
    "server:\n"
    "  listen: 127.0.0.1:8080\n"
    "  workers: auto              # one worker process per core\n"
    "  debug_endpoints: true      # GET /debug/pipeline and /debug/requests\n"
    "\n"
    "middleware:\n"
    "  - type: request_id         # X-Request-Id: kept when sent, made when not\n"
    "  - type: trace              # W3C traceparent: continued or started\n"
    "  - type: access_log         # one JSON line per request on stdout\n"
    "  - type: security_headers   # nosniff, X-Frame-Options, Referrer-Policy\n"
    "  - type: metrics            # GET /metrics, with per-layer histograms\n"
    "\n"
    "pipeline: [request_id, trace, access_log, security_headers, metrics]\n"
    "\n"
    "routes:\n"
    "  - path: /\n"
    "    respond: {body: \"Hello, World!\"}\n"
    "  - path: /healthz\n"
    "    respond: {body: '{\"status\":\"ok\"}', content_type: application/json}\n";
