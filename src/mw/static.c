/* PLACEHOLDER: replaced by the real implementation (issue 5). */
#include "core/log.h"
#include "mw/mw.h"

void vie_static_opts_init(vie_static_opts *o)
{
    (void)o;
}

int vie_static_new(const vie_static_opts *o, vie_static **out)
{
    (void)o;
    *out = NULL;
    return VIE_EINVAL;
}

void vie_static_free(vie_static *s)
{
    (void)s;
}

vie_status vie_static_handler(vie_ctx *c, void *arg)
{
    (void)arg;
    return vie_send_problem(c, 501, "not built yet");
}

vie_status vie_send_file(vie_ctx *c, int status, const char *content_type, int fd, uint64_t offset,
                         uint64_t len)
{
    (void)status;
    (void)content_type;
    (void)fd;
    (void)offset;
    (void)len;
    return vie_send_problem(c, 501, "not built yet");
}
