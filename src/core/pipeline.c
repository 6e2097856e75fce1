/* Pipeline build at freeze: validate every layer and route, then sort
 * each route's chain by phase, then declared constraints, then
 * registration order, and remember why each layer follows the previous.
 *
 * Every problem is logged (naming the culprits) before the app refuses
 * to start, so one run shows them all. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/app.h"
#include "core/describe.h"
#include "core/log.h"

static const char *const phase_names[] = {"observe", "guard", "app"};

const char *pipeline_phase_name(vie_phase p)
{
    return (unsigned)p < 3 ? phase_names[p] : "?";
}

/* "auth" names the layer "auth" and the family "auth.*". */
static bool name_matches(const char *want, const char *name)
{
    size_t n = strlen(want);
    return strncmp(want, name, n) == 0 && (name[n] == '\0' || name[n] == '.');
}

static bool valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
              ch == '-'))
            return false;
    }
    return true;
}

static const char *scope_of(const layer *l)
{
    return l->group ? l->group->prefix : "the app";
}

/* Is g (or the app, g == NULL) the group of route r or one of its parents? */
static bool in_scope(const vie_group *g, const route_entry *r)
{
    if (!g) return true;
    for (const vie_group *p = r->group; p; p = p->parent)
        if (p == g) return true;
    return false;
}

/* ------------------------------------------------------------------ */
/* App-wide checks                                                     */

typedef enum edge_kind { EDGE_REQUIRES = 1, EDGE_RUNS_BEFORE, EDGE_RUNS_AFTER } edge_kind;

/* Calls fn(from, to, kind, declared_by) for every declared ordering
 * between two layers of the app (by family match). */
typedef void (*edge_fn)(void *ud, layer *from, layer *to, edge_kind kind, layer *by);

static void for_each_edge(vie_app *app, edge_fn fn, void *ud)
{
    for (size_t i = 0; i < app->n_layers; i++) {
        layer *l = app->layers[i];
        const char *const *lists[3] = {l->mw.requires, l->mw.runs_before, l->mw.runs_after};
        for (int k = 0; k < 3; k++) {
            for (const char *const *p = lists[k]; p && *p; p++) {
                for (size_t j = 0; j < app->n_layers; j++) {
                    layer *m = app->layers[j];
                    if (m == l || !name_matches(*p, m->mw.name)) continue;
                    if (k == 1)
                        fn(ud, l, m, EDGE_RUNS_BEFORE, l);
                    else
                        fn(ud, m, l, k == 0 ? EDGE_REQUIRES : EDGE_RUNS_AFTER, l);
                }
            }
        }
    }
}

static void edge_text(char *buf, size_t cap, layer *from, layer *to, edge_kind kind)
{
    switch (kind) {
    case EDGE_REQUIRES: snprintf(buf, cap, "%s requires %s", to->mw.name, from->mw.name); break;
    case EDGE_RUNS_BEFORE:
        snprintf(buf, cap, "%s runs_before %s", from->mw.name, to->mw.name);
        break;
    case EDGE_RUNS_AFTER: snprintf(buf, cap, "%s runs_after %s", to->mw.name, from->mw.name); break;
    }
}

static void check_phase_edge(void *ud, layer *from, layer *to, edge_kind kind, layer *by)
{
    int *errors = ud;
    (void)by;
    if (from->mw.phase <= to->mw.phase) return;
    char why[256];
    edge_text(why, sizeof why, from, to, kind);
    LOG_ERROR("pipeline: \"%s\" contradicts the phases: %s is %s and %s is %s, and %s runs "
              "before %s; change a phase or drop the constraint",
              why, from->mw.name, pipeline_phase_name(from->mw.phase), to->mw.name,
              pipeline_phase_name(to->mw.phase), pipeline_phase_name(to->mw.phase),
              pipeline_phase_name(from->mw.phase));
    (*errors)++;
}

static int check_names(vie_app *app)
{
    int errors = 0;
    for (size_t i = 0; i < app->n_layers; i++) {
        layer *l = app->layers[i];
        if (!valid_name(l->mw.name)) {
            LOG_ERROR("pipeline: layer name \"%s\" (registered on %s) is invalid: use 1 to 64 of "
                      "[a-z0-9_.-]",
                      l->mw.name ? l->mw.name : "(null)", scope_of(l));
            errors++;
            continue;
        }
        if ((unsigned)l->mw.phase > VIE_APP) {
            LOG_ERROR("pipeline: layer %s has an invalid phase %d", l->mw.name, (int)l->mw.phase);
            errors++;
        }
        for (size_t j = 0; j < i; j++) {
            if (app->layers[j]->mw.name && !strcmp(app->layers[j]->mw.name, l->mw.name)) {
                LOG_ERROR("pipeline: duplicate layer name \"%s\": registered on %s (#%u) and on "
                          "%s (#%u); give each instance its own name, e.g. \"%s.%u\"",
                          l->mw.name, scope_of(app->layers[j]), app->layers[j]->id + 1, scope_of(l),
                          l->id + 1, l->mw.name, l->id + 1);
                errors++;
            }
        }
        const char *const *lists[3] = {l->mw.requires, l->mw.runs_before, l->mw.runs_after};
        static const char *const list_names[3] = {"requires", "runs_before", "runs_after"};
        for (int k = 0; k < 3; k++) {
            for (const char *const *p = lists[k]; p && *p; p++) {
                bool found = false;
                for (size_t j = 0; j < app->n_layers && !found; j++)
                    found = app->layers[j] != l && app->layers[j]->mw.name &&
                            name_matches(*p, app->layers[j]->mw.name);
                if (!found) {
                    LOG_ERROR("pipeline: layer %s %s \"%s\", but no other layer has that name",
                              l->mw.name, list_names[k], *p);
                    errors++;
                }
            }
        }
    }
    return errors;
}

/* ------------------------------------------------------------------ */
/* Per-route sort                                                      */

typedef struct sorter {
    layer **cand; /* the chain's layers, registration order */
    uint32_t n;
    uint8_t *edge; /* n*n: edge_kind from i to j, 0 for none */
    layer **edge_by;
} sorter;

static int index_of(const sorter *s, const layer *l)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (s->cand[i] == l) return (int)i;
    return -1;
}

static void add_chain_edge(void *ud, layer *from, layer *to, edge_kind kind, layer *by)
{
    sorter *s = ud;
    int a = index_of(s, from), b = index_of(s, to);
    if (a < 0 || b < 0) return;
    if (!s->edge[(size_t)a * s->n + (size_t)b]) {
        s->edge[(size_t)a * s->n + (size_t)b] = (uint8_t)kind;
        s->edge_by[(size_t)a * s->n + (size_t)b] = by;
    }
}

/* Log one cycle among the unsorted nodes (done[] false). */
static void report_cycle(const sorter *s, const bool *done, const route_entry *r)
{
    uint32_t n = s->n;
    int *next = malloc(sizeof(int) * n);
    int *seen = calloc(n, sizeof(int));
    if (!next || !seen) goto out;
    /* Every unsorted node has an unsorted predecessor: walk backwards
     * until a node repeats; the walk from there is a cycle. */
    uint32_t start = 0;
    while (start < n && done[start])
        start++;
    int cur = (int)start, step = 1;
    while (cur >= 0 && !seen[cur]) {
        seen[cur] = step++;
        int pred = -1;
        for (uint32_t p = 0; p < n && pred < 0; p++)
            if (!done[p] && s->edge[p * n + (uint32_t)cur]) pred = (int)p;
        next[cur] = pred;
        cur = pred;
    }
    if (cur < 0) goto out;
    char text[1024];
    size_t len = 0;
    /* next[] points to predecessors: print in execution order by
     * collecting the cycle and reversing it. */
    int cyc[VIE_MAX_LAYERS], k = 0, x = cur;
    do {
        cyc[k++] = x;
        x = next[x];
    } while (x != cur && k < VIE_MAX_LAYERS);
    for (int i = k - 1; i >= 0 && len < sizeof text - 80; i--)
        len += (size_t)snprintf(text + len, sizeof text - len, "%s -> ", s->cand[cyc[i]]->mw.name);
    snprintf(text + len, sizeof text - len, "%s", s->cand[cyc[k - 1]]->mw.name);
    /* cyc[i + 1] precedes cyc[i], and cyc[0] precedes cyc[k - 1]: quote
     * that edge, the one that closes the cycle. */
    char why[256];
    int a = cyc[0], b = cyc[k - 1];
    edge_text(why, sizeof why, s->cand[a], s->cand[b],
              (edge_kind)s->edge[(size_t)a * n + (size_t)b]);
    LOG_ERROR("pipeline: route %s: the declared order has a cycle: %s (one of its constraints: "
              "\"%s\")",
              r->label, text, why);
out:
    free(next);
    free(seen);
}

static char *reason_for(const sorter *s, const int *pos_of, int prev, int cur)
{
    char buf[256];
    layer *p = s->cand[prev], *c = s->cand[cur];
    uint32_t n = s->n;
    if (p->mw.phase < c->mw.phase) {
        snprintf(buf, sizeof buf, "phase: %s after %s", pipeline_phase_name(c->mw.phase),
                 pipeline_phase_name(p->mw.phase));
    } else if (s->edge[(size_t)prev * n + (size_t)cur]) {
        char e[200];
        edge_text(e, sizeof e, p, c, (edge_kind)s->edge[(size_t)prev * n + (size_t)cur]);
        snprintf(buf, sizeof buf, "declared: %s", e);
    } else if (p->id < c->id) {
        snprintf(buf, sizeof buf, "registration order");
    } else {
        /* c was held back: name its latest predecessor. */
        int best = -1;
        for (uint32_t q = 0; q < n; q++)
            if (s->edge[q * n + (uint32_t)cur] && (best < 0 || pos_of[q] > pos_of[best]))
                best = (int)q;
        char e[200] = "constraints";
        if (best >= 0)
            edge_text(e, sizeof e, s->cand[best], c,
                      (edge_kind)s->edge[(size_t)best * n + (size_t)cur]);
        snprintf(buf, sizeof buf, "declared: %s", e);
    }
    return strdup(buf);
}

static int build_chain(vie_app *app, route_entry *r)
{
    sorter s = {0};
    s.cand = malloc(sizeof(layer *) * (app->n_layers + 1));
    if (!s.cand) return -1;
    for (size_t i = 0; i < app->n_layers; i++)
        if (in_scope(app->layers[i]->group, r)) s.cand[s.n++] = app->layers[i];
    uint32_t n = s.n;
    int errors = 0;
    s.edge = calloc((size_t)n * n + 1, 1);
    s.edge_by = calloc((size_t)n * n + 1, sizeof(layer *));
    bool *done = calloc(n + 1, sizeof(bool));
    int *pos_of = calloc(n + 1, sizeof(int));
    layer **order = malloc(sizeof(layer *) * (n + 1));
    int *order_idx = malloc(sizeof(int) * (n + 1));
    if (!s.edge || !s.edge_by || !done || !pos_of || !order || !order_idx) {
        errors = -1;
        goto out;
    }

    /* A layer's requirements must be in every route's chain it is in; the
     * chain of 404 and 405 answers is no route's (it answers, nothing
     * there needs protecting). */
    for (uint32_t i = 0; i < n && r != app->fallback; i++) {
        for (const char *const *p = s.cand[i]->mw.requires; p && *p; p++) {
            bool here = false;
            for (uint32_t j = 0; j < n && !here; j++)
                here = j != i && name_matches(*p, s.cand[j]->mw.name);
            if (!here) {
                LOG_ERROR("pipeline: route %s: layer %s requires %s, which is not in this route's "
                          "chain (register %s where it covers this route)",
                          r->label, s.cand[i]->mw.name, *p, *p);
                errors++;
            }
        }
    }
    for_each_edge(app, add_chain_edge, &s);

    /* Kahn's algorithm, always taking the smallest (phase, registration)
     * among the ready layers: stable, and phase-sorted because no edge
     * goes against the phases (checked app-wide before). */
    uint32_t emitted = 0;
    while (emitted < n) {
        int pick = -1;
        for (uint32_t i = 0; i < n; i++) {
            if (done[i]) continue;
            bool ready = true;
            for (uint32_t p = 0; p < n && ready; p++)
                if (!done[p] && s.edge[p * n + i]) ready = false;
            if (!ready) continue;
            if (pick < 0 || s.cand[i]->mw.phase < s.cand[pick]->mw.phase ||
                (s.cand[i]->mw.phase == s.cand[pick]->mw.phase && s.cand[i]->id < s.cand[pick]->id))
                pick = (int)i;
        }
        if (pick < 0) {
            report_cycle(&s, done, r);
            errors++;
            break;
        }
        done[pick] = true;
        pos_of[pick] = (int)emitted;
        order_idx[emitted] = pick;
        order[emitted++] = s.cand[pick];
    }
    if (errors) goto out;

    r->chain.n = n;
    r->chain.layers = order;
    r->chain.reasons = calloc(n + 1, sizeof(char *));
    order = NULL;
    if (!r->chain.reasons) {
        errors = -1;
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (i == 0) {
            char buf[64];
            snprintf(buf, sizeof buf, "first: phase %s",
                     pipeline_phase_name(r->chain.layers[0]->mw.phase));
            r->chain.reasons[0] = strdup(buf);
        } else {
            r->chain.reasons[i] = reason_for(&s, pos_of, order_idx[i - 1], order_idx[i]);
        }
    }

    /* The route's own requirements: resolved to a mask of its layers. */
    size_t nreq = 0;
    for (char **p = r->requires; p && *p; p++)
        nreq++;
    r->reqs = calloc(nreq + 1, sizeof *r->reqs);
    if (!r->reqs) {
        errors = -1;
        goto out;
    }
    for (size_t k = 0; k < nreq; k++) {
        route_requirement *q = &r->reqs[r->n_reqs++];
        q->name = r->requires[k];
        bool any = false;
        for (uint32_t i = 0; i < n; i++) {
            if (!name_matches(q->name, r->chain.layers[i]->mw.name)) continue;
            uint32_t id = r->chain.layers[i]->id;
            q->mask[id >> 6] |= 1ull << (id & 63);
            any = true;
        }
        if (!any) {
            LOG_ERROR("pipeline: route %s requires %s, but no layer of that name is in its chain",
                      r->label, q->name);
            errors++;
        }
    }

out:
    free(s.cand);
    free(s.edge);
    free(s.edge_by);
    free(done);
    free(pos_of);
    free(order);
    free(order_idx);
    return errors;
}

/* Also resolves each OWNER key's owner once, so writes need no search. */
static int check_key_owners(vie_app *app)
{
    int errors = 0;
    free(app->key_owners);
    app->key_owners = calloc(app->n_keys + 1, sizeof *app->key_owners);
    if (!app->key_owners) {
        LOG_ERROR("pipeline: out of memory");
        return 1;
    }
    for (size_t k = 0; k < app->n_keys; k++) {
        vie_key *key = app->keys[k];
        if (!key) continue;
        int owners = 0;
        const char *first = NULL;
        for (size_t i = 0; i < app->n_layers; i++) {
            for (vie_key *const *p = app->layers[i]->mw.owns; p && *p; p++) {
                if (*p != key) continue;
                if (key->policy != VIE_KEY_OWNER) {
                    LOG_ERROR("pipeline: layer %s owns key %s, whose policy is not VIE_KEY_OWNER",
                              app->layers[i]->mw.name, key->name);
                    errors++;
                } else if (owners++ == 0) {
                    first = app->layers[i]->mw.name;
                    app->key_owners[k] = app->layers[i];
                } else {
                    LOG_ERROR("pipeline: key %s has two owners: %s and %s", key->name, first,
                              app->layers[i]->mw.name);
                    errors++;
                }
            }
        }
        if (key->policy == VIE_KEY_OWNER && owners == 0) {
            LOG_ERROR("pipeline: key %s is VIE_KEY_OWNER but no layer owns it (list it in the "
                      "owner's vie_middleware.owns)",
                      key->name);
            errors++;
        }
    }
    return errors;
}

int pipeline_build(vie_app *app)
{
    int errors = check_names(app);
    if (errors == 0) for_each_edge(app, check_phase_edge, &errors);
    errors += check_key_owners(app);
    if (errors == 0) {
        for (size_t i = 0; i < app->n_routes; i++) {
            int e = build_chain(app, app->routes[i]);
            if (e < 0) return VIE_ENOMEM;
            errors += e;
        }
        if (errors == 0 && app->fallback) {
            int e = build_chain(app, app->fallback);
            if (e < 0) return VIE_ENOMEM;
            errors += e;
        }
    }
    if (errors) {
        LOG_ERROR("pipeline: %d problem%s: the app refuses to start", errors,
                  errors > 1 ? "s" : "");
        return VIE_ECONFIG;
    }
    return VIE_OK;
}

void pipeline_free(vie_app *app)
{
    for (size_t i = 0; i <= app->n_routes; i++) {
        route_entry *r = i < app->n_routes ? app->routes[i] : app->fallback;
        if (!r) break;
        for (uint32_t k = 0; r->chain.reasons && k < r->chain.n; k++)
            free(r->chain.reasons[k]);
        free(r->chain.reasons);
        free(r->chain.layers);
        free(r->reqs);
        r->chain = (chain){0};
        r->reqs = NULL;
        r->n_reqs = 0;
    }
}
