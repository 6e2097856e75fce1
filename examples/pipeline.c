/* A small API behind a declared pipeline:
 *
 *   request log (observe) -> auth (guard) -> rate limit (guard, requires
 *   auth) -> profile lookup (app, asynchronous) -> handler
 *
 * Routes under /public have only the log; those under /api have everything.
 * Try:
 *
 *   curl -i localhost:8080/public/hello
 *   curl -i localhost:8080/api/me                          # 401
 *   curl -i -H 'Authorization: Bearer alice-token' localhost:8080/api/me
 *   for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code}\n' \
 *       -H 'Authorization: Bearer alice-token' localhost:8080/api/me; done   # 429s
 *   curl localhost:8080/debug/pipeline                     # the declared order
 *
 * The order does not depend on the order of the vie_use calls below: the
 * phases and "ratelimit requires auth" decide it, and the app refuses to
 * start if they contradict each other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>
#include <vie/vie.h>

/* The authenticated user: written only by the auth layer (OWNER), read by
 * everything after it, checked by the compiler. */
VIE_KEY(principal, const char *, VIE_KEY_OWNER);

/* ---- request log: observe phase, an after hook sees the final status */

static vie_status log_before(vie_ctx *c, void *state)
{
    return VIE_NEXT;
}

static void log_after(vie_ctx *c, void *state)
{
    vie_str m = vie_method(c), p = vie_path(c);
    size_t n = vie_trail_count(c);
    vie_trail_entry first, last;
    vie_trail_at(c, 0, &first);
    vie_trail_at(c, n - 1, &last);
    uint64_t us = ((last.leave_ns ? last.leave_ns : last.enter_ns) - first.enter_ns) / 1000;
    const char *who = principal_has(c) ? principal_get(c) : "-";
    printf("%.*s %.*s -> %d user=%s layers=%zu %lluus\n", (int)m.len, m.ptr, (int)p.len, p.ptr,
           vie_response_status(c), who, n, (unsigned long long)us);
}

/* ---- auth: guard phase, bearer tokens, sets the principal key */

static const char *const tokens[][2] = {{"alice-token", "alice"}, {"bob-token", "bob"}};

static vie_status auth_before(vie_ctx *c, void *state)
{
    vie_str h = vie_header(c, "Authorization");
    if (h.ptr && h.len > 7 && strncmp(h.ptr, "Bearer ", 7) == 0) {
        for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
            if (strlen(tokens[i][0]) == h.len - 7 &&
                memcmp(tokens[i][0], h.ptr + 7, h.len - 7) == 0) {
                principal_set(c, tokens[i][1]);
                return VIE_NEXT;
            }
        }
    }
    vie_header_add(c, "WWW-Authenticate", "Bearer");
    return vie_send_problem(c, 401, "a valid bearer token is required");
}

/* ---- rate limit: guard phase, after auth, 5 requests per 10 s per user */

typedef struct bucket {
    char user[32];
    time_t window;
    int count;
} bucket;

static vie_status ratelimit_before(vie_ctx *c, void *state)
{
    bucket *buckets = state; /* 16 slots, enough for a demo */
    const char *user = principal_get(c);
    time_t window = time(NULL) / 10;
    bucket *b = &buckets[(unsigned char)user[0] % 16];
    if (strcmp(b->user, user) != 0 || b->window != window) {
        snprintf(b->user, sizeof b->user, "%s", user);
        b->window = window;
        b->count = 0;
    }
    if (++b->count > 5) {
        vie_header_add(c, "Retry-After", "10");
        return vie_send_problem(c, 429, "5 requests per 10 seconds");
    }
    return VIE_NEXT;
}

/* ---- profile lookup: app phase, asynchronous (a timer stands in for a
 * database), cancelled cleanly if the client goes away */

typedef struct lookup {
    uv_timer_t timer;
    vie_ref ref;
} lookup;

static void lookup_free(uv_handle_t *h)
{
    free(h->data);
}

static void lookup_done(uv_timer_t *t)
{
    lookup *l = t->data;
    vie_resume(l->ref, VIE_NEXT); /* refused, and logged, if the request has ended */
    uv_close((uv_handle_t *)&l->timer, lookup_free);
}

static void lookup_cancel(void *arg)
{
    lookup *l = arg;
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, lookup_free);
}

static vie_status lookup_before(vie_ctx *c, void *state)
{
    lookup *l = malloc(sizeof *l);
    if (!l) return vie_send_problem(c, 503, "out of memory");
    l->ref = vie_ref_of(c);
    uv_timer_init(vie_loop(c), &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, lookup_done, 20, 0);
    vie_on_cancel(c, lookup_cancel, l);
    return VIE_PENDING;
}

/* ---- handlers */

static vie_status hello(vie_ctx *c, void *arg)
{
    return vie_send_text(c, 200, "Hello from the public side");
}

static vie_status me(vie_ctx *c, void *arg)
{
    char body[96];
    snprintf(body, sizeof body, "{\"user\":\"%s\"}", principal_get(c));
    return vie_send_json(c, 200, body);
}

int main(void)
{
    vie_options o;
    vie_options_init(&o);
    o.listen = getenv("VIE_LISTEN") ? getenv("VIE_LISTEN") : "127.0.0.1:8080";
    o.debug_endpoints = true;
    o.debug = true; /* print every route's pipeline at start */
    vie_app *app = vie_app_new(&o);

    static vie_key *const auth_owns[] = {&principal_key, NULL};
    static const char *const needs_auth[] = {"auth", NULL};
    static bucket buckets[16];
    const vie_middleware request_log = {
        .name = "log", .phase = VIE_OBSERVE, .before = log_before, .after = log_after};
    const vie_middleware auth = {
        .name = "auth", .phase = VIE_GUARD, .before = auth_before, .owns = auth_owns};
    const vie_middleware ratelimit = {.name = "ratelimit",
                                      .phase = VIE_GUARD,
                                      .before = ratelimit_before,
                                      .requires = needs_auth};
    const vie_middleware profile = {
        .name = "profile", .phase = VIE_APP, .before = lookup_before, .async_timeout_ms = 500};

    vie_group *api, *pub;
    vie_group_new(app, NULL, "/api", &api);
    vie_group_new(app, NULL, "/public", &pub);
    vie_use(app, &request_log, NULL);
    /* Registered "backwards" on purpose: the declared order still holds. */
    vie_group_use(api, &ratelimit, buckets);
    vie_group_use(api, &auth, NULL);
    vie_group_use(api, &profile, NULL);

    vie_route_with(app, "GET", "/hello", hello, NULL, &(vie_route_opts){.group = pub});
    vie_route_with(app, "GET", "/me", me, NULL,
                   &(vie_route_opts){.group = api, .requires = needs_auth});

    int rc = vie_app_run(app); /* refuses to start, naming the culprits, if the pipeline is wrong */
    vie_app_free(app);
    return rc == VIE_OK ? 0 : 1;
}
