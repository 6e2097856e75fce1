/* Text, JSON and Mermaid renderings of every route's effective chain. */
#include "core/describe.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/ctx.h"
#include "core/metrics.h"
#include "http/writer.h"

static void out_json_str(vie_buf *b, const char *s)
{
    size_t n = strlen(s);
    if (buf_reserve(b, n * 6 + 3) != 0) return;
    b->len += json_escape(b->data + b->len, n * 6 + 3, s, n);
}

static void out_name_list(vie_buf *b, const char *label, const char *const *v)
{
    if (!v || !*v) return;
    buf_printf(b, " %s=", label);
    for (const char *const *p = v; *p; p++)
        buf_printf(b, "%s%s", p == v ? "" : ",", *p);
}

static void describe_text(vie_app *app, vie_buf *b)
{
    for (size_t i = 0; i < app->n_routes; i++) {
        const route_entry *r = app->routes[i];
        buf_printf(b, "%s\n", r->label);
        for (uint32_t k = 0; k < r->chain.n; k++) {
            const layer *l = r->chain.layers[k];
            buf_printf(b, "  %2u. %-24s %-7s", k + 1, l->mw.name, pipeline_phase_name(l->mw.phase));
            buf_printf(b, " [%s%s%s]", l->mw.before ? "before" : "",
                       l->mw.before && l->mw.after ? "+" : "", l->mw.after ? "after" : "");
            out_name_list(b, "requires", l->mw.requires);
            out_name_list(b, "runs_before", l->mw.runs_before);
            out_name_list(b, "runs_after", l->mw.runs_after);
            buf_printf(b, "  <- %s\n", r->chain.reasons[k]);
        }
        buf_printf(b, "  %2u. handler", r->chain.n + 1);
        out_name_list(b, "requires", (const char *const *)r->requires);
        buf_printf(b, "\n");
    }
}

static void json_list(vie_buf *b, const char *key, const char *const *v)
{
    buf_printf(b, ",\"%s\":[", key);
    for (const char *const *p = v; p && *p; p++) {
        if (p != v) buf_printf(b, ",");
        out_json_str(b, *p);
    }
    buf_printf(b, "]");
}

static void describe_json(vie_app *app, vie_buf *b)
{
    buf_printf(b, "{\"routes\":[");
    for (size_t i = 0; i < app->n_routes; i++) {
        const route_entry *r = app->routes[i];
        buf_printf(b, "%s{\"route\":", i ? "," : "");
        out_json_str(b, r->label);
        buf_printf(b, ",\"method\":");
        out_json_str(b, r->method);
        buf_printf(b, ",\"pattern\":");
        out_json_str(b, r->pattern);
        json_list(b, "requires", (const char *const *)r->requires);
        buf_printf(b,
                   ",\"counters\":{\"unanswered\":%llu,\"requires_refused\":%llu,\"panics\":%llu}",
                   (unsigned long long)r->n->unanswered, (unsigned long long)r->n->requires_refused,
                   (unsigned long long)r->n->panics);
        buf_printf(b, ",\"chain\":[");
        for (uint32_t k = 0; k < r->chain.n; k++) {
            const layer *l = r->chain.layers[k];
            buf_printf(b, "%s{\"name\":", k ? "," : "");
            out_json_str(b, l->mw.name);
            buf_printf(b, ",\"phase\":\"%s\",\"before\":%s,\"after\":%s,\"scope\":",
                       pipeline_phase_name(l->mw.phase), l->mw.before ? "true" : "false",
                       l->mw.after ? "true" : "false");
            out_json_str(b, l->group ? l->group->prefix : "app");
            json_list(b, "requires", l->mw.requires);
            json_list(b, "runs_before", l->mw.runs_before);
            json_list(b, "runs_after", l->mw.runs_after);
            buf_printf(b, ",\"reason\":");
            out_json_str(b, r->chain.reasons[k]);
            buf_printf(b,
                       ",\"counters\":{\"chain_breaks\":%llu,\"next_after_done\":%llu,"
                       "\"async_timeouts\":%llu,\"invalid_status\":%llu,\"panics\":%llu}}",
                       (unsigned long long)l->n->chain_breaks,
                       (unsigned long long)l->n->next_after_done,
                       (unsigned long long)l->n->async_timeouts,
                       (unsigned long long)l->n->invalid_status, (unsigned long long)l->n->panics);
        }
        buf_printf(b, "]}");
    }
    const vie_stats *s = app->stats;
    buf_printf(b,
               "],\"counters\":{\"requests\":%llu,\"chain_breaks\":%llu,\"next_after_done\":%llu,"
               "\"requires_refused\":%llu,\"key_conflicts\":%llu,\"async_timeouts\":%llu,"
               "\"deadline_exceeded\":%llu,\"stale_refs\":%llu,\"frozen_refusals\":%llu,"
               "\"writer_refusals\":%llu,\"panics\":%llu}}",
               (unsigned long long)metrics_requests_answered(app),
               (unsigned long long)s->chain_breaks, (unsigned long long)s->next_after_done,
               (unsigned long long)s->requires_refused, (unsigned long long)s->key_conflicts,
               (unsigned long long)s->async_timeouts, (unsigned long long)s->deadline_exceeded,
               (unsigned long long)s->stale_refs, (unsigned long long)s->frozen_refusals,
               (unsigned long long)s->writer_refusals, (unsigned long long)s->panics);
}

/* Mermaid labels are quoted: drop the characters that would end them. */
static void out_mermaid_label(vie_buf *b, const char *s)
{
    for (; *s; s++)
        buf_printf(b, "%c", (*s == '"' || *s == '\n') ? '\'' : *s);
}

static void describe_mermaid(vie_app *app, vie_buf *b)
{
    buf_printf(b, "flowchart LR\n");
    for (size_t i = 0; i < app->n_routes; i++) {
        const route_entry *r = app->routes[i];
        buf_printf(b, "  subgraph r%zu[\"", i);
        out_mermaid_label(b, r->label);
        buf_printf(b, "\"]\n    direction LR\n");
        for (uint32_t k = 0; k < r->chain.n; k++) {
            const layer *l = r->chain.layers[k];
            buf_printf(b, "    r%zu_%u[\"", i, k);
            out_mermaid_label(b, l->mw.name);
            buf_printf(b, "<br/><i>%s</i>\"]\n", pipeline_phase_name(l->mw.phase));
        }
        buf_printf(b, "    r%zu_h([\"handler\"])\n", i);
        for (uint32_t k = 0; k < r->chain.n; k++) {
            if (k + 1 < r->chain.n)
                buf_printf(b, "    r%zu_%u -->|\"", i, k);
            else
                buf_printf(b, "    r%zu_%u --> r%zu_h\n", i, k, i);
            if (k + 1 < r->chain.n) {
                out_mermaid_label(b, r->chain.reasons[k + 1]);
                buf_printf(b, "\"| r%zu_%u\n", i, k + 1);
            }
        }
        buf_printf(b, "  end\n");
    }
}

char *vie_app_describe(vie_app *app, vie_format format)
{
    if (!app || vie_app_freeze(app) != VIE_OK) return NULL;
    vie_buf b = {0};
    switch (format) {
    case VIE_FORMAT_TEXT: describe_text(app, &b); break;
    case VIE_FORMAT_JSON: describe_json(app, &b); break;
    case VIE_FORMAT_MERMAID: describe_mermaid(app, &b); break;
    default: return NULL;
    }
    if (buf_reserve(&b, 1) != 0) {
        buf_free(&b);
        return NULL;
    }
    b.data[b.len] = '\0';
    return b.data;
}

vie_status describe_debug_handler(vie_ctx *c, void *arg)
{
    (void)arg;
    char *json = vie_app_describe(c->app, VIE_FORMAT_JSON);
    if (!json) return vie_send_problem(c, 500, "the pipeline could not be described");
    vie_status st = vie_send_json(c, 200, json);
    free(json);
    return st;
}
