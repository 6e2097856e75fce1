/* The built-in middleware types by YAML name. */
#include <string.h>

#include "mw/mw.h"

static const mw_type types[] = {
    {"request_id", VIE_OBSERVE, true, mw_request_id_from_yaml,
     "generate or propagate X-Request-Id"},
    {"trace", VIE_OBSERVE, true, mw_trace_from_yaml, "W3C traceparent: continue or start a trace"},
    {"access_log", VIE_OBSERVE, true, mw_access_log_from_yaml,
     "one JSON line per request, with the layer trail"},
    {"metrics", VIE_OBSERVE, false, mw_metrics_from_yaml,
     "GET /metrics (Prometheus) with per-layer histograms"},
    {"cors", VIE_OBSERVE, true, mw_cors_from_yaml, "CORS headers and preflights"},
    {"security_headers", VIE_OBSERVE, true, mw_security_headers_from_yaml,
     "HSTS, X-Frame-Options, nosniff, Referrer-Policy, CSP"},
    {"fault", VIE_GUARD, true, mw_fault_from_yaml, "inject delays and aborts (chaos tests)"},
    {"circuit_breaker", VIE_GUARD, true, mw_circuit_breaker_from_yaml,
     "stop calling what keeps failing: the fallback while open"},
    {"slo", VIE_OBSERVE, true, mw_slo_from_yaml,
     "SLO burn-rate alerts that tighten rate limits and degrade routes"},
    {"timeout", VIE_GUARD, true, mw_timeout_from_yaml, "a request deadline: 504 past it"},
    {"rate_limit", VIE_GUARD, true, mw_rate_limit_from_yaml,
     "GCRA rate limit shared by the workers: 429"},
    {"auth", VIE_GUARD, true, mw_auth_from_yaml, "API keys or bearer tokens: 401"},
    {"body_limit", VIE_GUARD, true, mw_body_limit_from_yaml, "413 past a body size"},
    {"validate", VIE_APP, true, mw_validate_from_yaml,
     "required headers and query parameters, content types, JSON bodies"},
};

const mw_type *mw_type_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(types[i].name, name)) return &types[i];
    return NULL;
}

const mw_type *mw_types(size_t *n)
{
    *n = sizeof types / sizeof types[0];
    return types;
}
