/* The response writer: the NONE -> HEAD -> BODY -> ENDED state machine
 * behind vie_set_status, vie_header_add, vie_write, vie_end and vie_send*.
 * It appends the bytes of the response to ctx->out; the connection
 * decides when they reach the socket. */
#ifndef VIE_HTTP_WRITER_H
#define VIE_HTTP_WRITER_H

#include "core/ctx.h"

/* Finish a response whose head went out but whose end did not (a handler
 * that returned VIE_DONE mid-stream). */
void writer_finish(vie_ctx *c);

/* vie_send_file for a caller that opened fd itself: fd becomes the
 * response's (closed on every path, also when refused), saving a dup. */
vie_status writer_send_file_owned(vie_ctx *c, int status, const char *content_type, int fd,
                                  uint64_t offset, uint64_t len);

/* Format a JSON string literal (with quotes) of s into dst; returns bytes
 * written, at most dst_cap (truncating on a character boundary). */
size_t json_escape(char *dst, size_t dst_cap, const char *s, size_t len);

#endif
