/* Vie's in-process test kit: send a request through a frozen app without
 * a socket and get back what a client would see, plus the trail of the
 * layers it went through. The request goes through the real parser,
 * router, executor and response writer; asynchronous layers run on the
 * kit's own libuv loop.
 *
 *     vie_test_begin(app);
 *     vie_test_response *r = vie_test_request(app, "GET", "/users/7", NULL, NULL, 0);
 *     assert(r->status == 200);
 *     assert(strcmp(vie_test_header(r, "content-type"), "application/json") == 0);
 *     vie_test_response_free(r);
 *     vie_test_end(app);
 */
#ifndef VIE_VIE_TEST_H
#define VIE_VIE_TEST_H

#include "vie/vie.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vie_test_header {
    char *name;
    char *value;
} vie_test_field;

typedef struct vie_test_response {
    int status; /* 0 when no response could be read */
    vie_test_field *headers;
    size_t n_headers;
    char *body; /* decoded (dechunked), NUL-terminated */
    size_t body_len;
    vie_trail_entry *trail; /* layer names point into the app */
    size_t n_trail;
    bool keep_alive; /* the connection would have stayed open */
    char *raw;       /* every byte Vie wrote, NUL-terminated */
    size_t raw_len;
} vie_test_response;

/* Freeze the app (VIE_ECONFIG if it does not validate) and make the kit's
 * loop. */
VIE_API int vie_test_begin(vie_app *app);
/* Drop the kit's loop. The app can then be freed. */
VIE_API void vie_test_end(vie_app *app);

/* Send a request. headers: "Name: value" strings, NULL-terminated, may be
 * NULL; Host and Content-Length are added. Runs the loop until the request
 * completes (at most 30 s of wall time). NULL only when out of memory. */
VIE_API vie_test_response *vie_test_request(vie_app *app, const char *method, const char *target,
                                            const char *const *headers, const void *body,
                                            size_t body_len);
/* Send raw request bytes (one request; a chunked body is decoded). */
VIE_API vie_test_response *vie_test_raw(vie_app *app, const void *bytes, size_t len);

/* The first header of the response called name (case-insensitive), or NULL. */
VIE_API const char *vie_test_header(const vie_test_response *r, const char *name);
VIE_API void vie_test_response_free(vie_test_response *r);

/* The kit's loop (uv_loop_t *), and a way to let it run for a while
 * (timers fire, parked requests time out). */
VIE_API void *vie_test_loop(vie_app *app);
VIE_API void vie_test_run_for(vie_app *app, uint32_t ms);

#ifdef __cplusplus
}
#endif
#endif
