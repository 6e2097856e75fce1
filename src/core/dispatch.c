#include "core/dispatch.h"

#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "http/writer.h"
#include "router/path.h"

/* Path normalization needs a copy only when the path is not already
 * normal; the copy lives in the request arena. */
static bool normalize_path(vie_ctx *c)
{
    const char *p = c->req.path;
    size_t n = c->req.path_len;
    if (path_is_normal(p, n)) {
        c->path = (vie_str){p, n};
        return true;
    }
    char *out = arena_alloc(&c->arena, n + 1);
    if (!out) return false;
    ssize_t m = path_normalize(p, n, out);
    if (m < 0) return false;
    out[m] = '\0';
    c->path = (vie_str){out, (size_t)m};
    return true;
}

/* Answer a request no route's handler will: through the app-wide layers
 * when there are any, so every answer gets a request id, an access-log
 * line and the app-wide guards; else at once, without the executor. */
static void answer_unrouted(vie_ctx *c, int status, const char *allow, const char *detail)
{
    route_entry *fb = c->app->fallback;
    if (fb && fb->chain.n) {
        c->auto_status = status;
        c->auto_allow = allow;
        c->auto_detail = detail;
        c->route = fb;
        if (!c->start_ns) c->start_ns = clock_now_ns();
        executor_start(c);
        return;
    }
    if (allow) vie_header_add(c, "Allow", allow);
    if (status == 204)
        vie_send(c, 204, NULL, NULL, 0);
    else
        vie_send_problem(c, status, detail);
}

void dispatch_request(vie_ctx *c)
{
    if (c->req.method_id == HTTP_M_OPTIONS && c->req.path_len == 1 && c->req.path[0] == '*') {
        /* OPTIONS * asks about the server, not a resource. */
        c->path = (vie_str){c->req.path, 1};
        answer_unrouted(c, 204, "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS", NULL);
        return;
    }
    if (c->req.method_id == HTTP_M_CONNECT) {
        c->path = (vie_str){c->req.path, c->req.path_len};
        answer_unrouted(c, 501, NULL, "CONNECT is not supported");
        return;
    }
    if (!normalize_path(c)) {
        c->path = (vie_str){c->req.path, c->req.path_len};
        c->keep_alive = false; /* after an error answer, the connection closes */
        answer_unrouted(c, 400, NULL, "the request path is malformed or climbs above the root");
        return;
    }
    router_result rr = router_find(c->app->router, c->req.method, c->req.method_len, c->path.ptr,
                                   c->path.len, &c->match);
    if (rr == ROUTER_METHOD_NOT_ALLOWED && c->req.method_id == HTTP_M_OPTIONS) {
        /* OPTIONS on a path with routes runs that path's pipeline (a CORS
         * layer answers preflights there) and, if no layer answers, gets
         * 204 with Allow. */
        const char *allow = c->match.allow;
        size_t al = strlen(allow);
        char *with = arena_alloc(&c->arena, al + sizeof ", OPTIONS");
        /* A CORS preflight meets the pipeline of the method it asks about. */
        vie_str want = vie_header(c, "Access-Control-Request-Method");
        rr = ROUTER_NOT_FOUND;
        if (want.ptr && want.len)
            rr = router_find(c->app->router, want.ptr, want.len, c->path.ptr, c->path.len,
                             &c->match);
        if (rr != ROUTER_FOUND)
            rr = router_find(c->app->router, allow, strcspn(allow, ", "), c->path.ptr, c->path.len,
                             &c->match);
        if (rr == ROUTER_FOUND && with) {
            memcpy(with, allow, al);
            memcpy(with + al, ", OPTIONS", sizeof ", OPTIONS");
            c->auto_allow = with;
            c->auto_status = 204;
        } else {
            rr = ROUTER_METHOD_NOT_ALLOWED;
            c->match.allow = allow;
        }
    }
    if (rr == ROUTER_NOT_FOUND) {
        answer_unrouted(c, 404, NULL, "no route matches this path");
        return;
    }
    if (rr != ROUTER_FOUND) {
        answer_unrouted(c, 405, c->match.allow, "the route exists but not for this method");
        return;
    }
    if (c->match.has_catchall && c->match.n_params) {
        /* A catch-all often becomes a file path: refuse values that would
         * decode to a dot segment ("..%2F.."), whatever the handler does. */
        const router_param *cp = &c->match.params[c->match.n_params - 1];
        char *tmp = arena_alloc(&c->arena, cp->raw_len + 1);
        ssize_t n = tmp ? path_decode(cp->raw, cp->raw_len, tmp) : -1;
        if (n < 0 || path_has_dot_segment(tmp, (size_t)n)) {
            c->keep_alive = false;
            answer_unrouted(c, 400, NULL, "the path holds an encoded dot segment or a bad escape");
            return;
        }
    }
    c->route = c->match.route;
    if (!c->start_ns) c->start_ns = clock_now_ns();
    executor_start(c);
}
