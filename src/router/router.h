/* The router: a radix tree over request paths, with static, ":param" and
 * "*catchall" segments, matched in the order static > param > catch-all
 * with backtracking, and one handler slot per method at each leaf.
 *
 * Routes are added while the app is configuring; lookups never allocate.
 */
#ifndef VIE_ROUTER_ROUTER_H
#define VIE_ROUTER_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROUTER_MAX_PARAMS 16

typedef struct vie_router vie_router;

typedef struct router_param {
    const char *name; /* from the pattern, NUL-terminated, owned by the router */
    const char *raw;  /* the matched bytes, pointing into the looked-up path (not decoded) */
    uint32_t raw_len;
} router_param;

typedef struct router_match {
    void *route;       /* what was given to router_add */
    const char *allow; /* on ROUTER_METHOD_NOT_ALLOWED: "GET, HEAD, POST" for the Allow header */
    uint32_t n_params;
    bool has_catchall; /* the last param is a catch-all */
    router_param params[ROUTER_MAX_PARAMS];
} router_match;

typedef enum router_result {
    ROUTER_FOUND = 0,
    ROUTER_NOT_FOUND,
    ROUTER_METHOD_NOT_ALLOWED,
} router_result;

typedef enum router_error {
    ROUTER_OK = 0,
    ROUTER_EPATTERN = -1,  /* malformed pattern: message in err */
    ROUTER_ECONFLICT = -2, /* the route conflicts with an earlier one: err names both */
    ROUTER_ENOMEM = -3,
} router_error;

vie_router *router_new(void);
void router_free(vie_router *r);

/* Add a route. method is an uppercase token ("GET"); pattern starts with
 * '/', its segments are static text, ":name" (one whole segment) or "*name"
 * (last segment only, matches the rest of the path, possibly empty).
 * Two routes conflict when they have the same method and the same shape
 * (same static text and param/catch-all positions, whatever the param
 * names). On error, err receives a one-line message, e.g.
 * "GET /users/:name conflicts with GET /users/:id".
 *
 * Details:
 * - method: RFC 9110 token chars without lowercase letters, at most 32
 *   bytes; besides the nine standard methods a router holds at most 55
 *   other method names.
 * - ':' and '*' are special only right after '/' and are refused anywhere
 *   else, so there is no way to write a static segment starting with ':'
 *   or '*'. Param names are [A-Za-z0-9_]+ and must differ within a pattern;
 *   a pattern holds at most ROUTER_MAX_PARAMS params, catch-all included.
 * - Patterns are visible ASCII and must already be normalized (no "." or
 *   ".." segment, no escaped unreserved character, see path.h): others
 *   could never match a normalized request path.
 * - "/a" and "/a/" are different routes; the router never redirects.
 * - A param matches one non-empty segment; a catch-all matches the rest of
 *   the path, '/' included, possibly empty: "/files/" then "*p" matches
 *   "/files/" (p empty) and "/files/a/b" (p "a/b"), not "/files". */
router_error router_add(vie_router *r, const char *method, const char *pattern, void *route,
                        char *err, size_t errlen);

/* Look up a normalized path (see path.h). HEAD falls back to GET when no
 * HEAD route exists. On ROUTER_METHOD_NOT_ALLOWED, m->allow lists the
 * methods of the best-matching path. Never allocates.
 *
 * Candidates are tried static > param > catch-all at each position, with
 * backtracking; when the best path match has no route for the method, the
 * next candidates that have one are tried before answering 405. m->allow
 * lists GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE, CONNECT in
 * that order, then other methods in order of first registration; it points
 * into the router and stays valid until router_free. */
router_result router_find(const vie_router *r, const char *method, size_t method_len,
                          const char *path, size_t path_len, router_match *m);

/* Number of routes added. */
size_t router_count(const vie_router *r);

#endif
