/* The embedded default app: enough to see Vie answer on a fresh machine. */
#include "cli/default_app.h"

static vie_status hello(vie_ctx *c, void *arg)
{
    (void)arg;
    return vie_send_text(c, 200, "Hello, World!");
}

static vie_status healthz(vie_ctx *c, void *arg)
{
    (void)arg;
    return vie_send_json(c, 200, "{\"status\":\"ok\"}");
}

/* Echo the body back with the request's content type. */
static vie_status echo(vie_ctx *c, void *arg)
{
    (void)arg;
    vie_str body = vie_body(c);
    vie_str ct = vie_header(c, "Content-Type");
    char type[256] = "application/octet-stream";
    if (ct.ptr && ct.len < sizeof type) {
        for (size_t i = 0; i < ct.len; i++)
            type[i] = ct.ptr[i];
        type[ct.len] = '\0';
    }
    return vie_send(c, 200, type, body.ptr, body.len);
}

int default_app_register(vie_app *app)
{
    int rc;
    if ((rc = vie_route(app, "GET", "/", hello, NULL)) != VIE_OK) return rc;
    if ((rc = vie_route(app, "GET", "/healthz", healthz, NULL)) != VIE_OK) return rc;
    if ((rc = vie_route(app, "POST", "/echo", echo, NULL)) != VIE_OK) return rc;
    return vie_route(app, "GET", "/metrics", vie_metrics_handler, NULL);
}
