/* The hello route behind N no-op layers, for `make bench`: what the
 * pipeline itself costs per request.
 *   usage: bench_layers PORT N   (N = 0 for none) */
#include <stdio.h>
#include <stdlib.h>
#include <vie/vie.h>

static vie_status noop_before(vie_ctx *c, void *state)
{
    return VIE_NEXT;
}

static vie_status hello(vie_ctx *c, void *arg)
{
    return vie_send_text(c, 200, "Hello, World!");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PORT LAYERS\n", argv[0]);
        return 2;
    }
    static char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", atoi(argv[1]));
    int n = atoi(argv[2]);
    vie_options o;
    vie_options_init(&o);
    o.listen = listen;
    vie_app *app = vie_app_new(&o);
    static const vie_phase phases[] = {VIE_OBSERVE, VIE_GUARD, VIE_APP};
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "noop%d", i);
        vie_middleware mw = {.name = name, .phase = phases[i % 3], .before = noop_before};
        if (vie_use(app, &mw, NULL) != VIE_OK) return 1;
    }
    vie_route(app, "GET", "/", hello, NULL);
    int rc = vie_app_run(app);
    vie_app_free(app);
    return rc == VIE_OK ? 0 : 1;
}
