/* Fuzz the router: the input is lines; "+METHOD PATTERN" adds a route,
 * anything else is looked up as a path with GET. Checks: no crash, no
 * leak, params point inside the path, and a static route that was added
 * is found by its own text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vie_router *r = router_new();
    if (!r) return 0;
    char *text = malloc(size + 1);
    if (!text) {
        router_free(r);
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    char err[256];
    router_match m;
    int id = 0;
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        size_t len = strlen(line);
        if (line[0] == '+') {
            char *sp = strchr(line, ' ');
            if (!sp) continue;
            *sp = '\0';
            const char *pattern = sp + 1;
            router_error e =
                router_add(r, line + 1, pattern, &text[id++ % (size + 1)], err, sizeof err);
            bool is_static = !strchr(pattern, ':') && !strchr(pattern, '*');
            if (e == ROUTER_OK && is_static && !strcmp(line + 1, "GET") &&
                router_find(r, "GET", 3, pattern, strlen(pattern), &m) != ROUTER_FOUND)
                abort(); /* an added static route must be found */
        } else {
            router_result res = router_find(r, "GET", 3, line, len, &m);
            if (res == ROUTER_FOUND) {
                for (uint32_t i = 0; i < m.n_params; i++)
                    if (m.params[i].raw < line ||
                        m.params[i].raw + m.params[i].raw_len > line + len)
                        abort();
            } else if (res == ROUTER_METHOD_NOT_ALLOWED && !m.allow) {
                abort();
            }
        }
    }
    free(text);
    router_free(r);
    return 0;
}
