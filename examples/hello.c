/* The smallest Vie app: three routes, one of them with a path parameter.
 * Build: cc hello.c $(pkg-config --cflags --libs vie) -o hello */
#include <stdio.h>
#include <vie/vie.h>

static vie_status hello(vie_ctx *c, void *arg)
{
    return vie_send_text(c, 200, "Hello, World!");
}

static vie_status greet(vie_ctx *c, void *arg)
{
    vie_str name = vie_param(c, "name");    /* percent-decoded */
    char *msg = vie_alloc(c, name.len + 8); /* lives until the request ends */
    snprintf(msg, name.len + 8, "Hello, %.*s", (int)name.len, name.ptr);
    return vie_send_text(c, 200, msg);
}

static vie_status echo(vie_ctx *c, void *arg)
{
    vie_str body = vie_body(c);
    return vie_send(c, 200, "application/octet-stream", body.ptr, body.len);
}

int main(void)
{
    vie_options o;
    vie_options_init(&o);
    o.listen = "127.0.0.1:8080";
    vie_app *app = vie_app_new(&o);
    vie_route(app, "GET", "/", hello, NULL);
    vie_route(app, "GET", "/hello/:name", greet, NULL);
    vie_route(app, "POST", "/echo", echo, NULL);
    int rc = vie_app_run(app); /* until SIGINT or SIGTERM */
    vie_app_free(app);
    return rc == VIE_OK ? 0 : 1;
}
