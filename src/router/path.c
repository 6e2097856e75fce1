/* Request path normalization and percent-decoding (see path.h).
 *
 * Every function writes no more bytes than it has read, so out may be the
 * same buffer as the input: the write position never overtakes the read
 * position.
 */
#include "router/path.h"

#include <stdint.h>

/* Value of a hex digit, or -1. */
static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20; /* fold 'A'-'F' onto 'a'-'f'; other bytes stay non-hex */
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* RFC 3986 2.3: the characters whose escapes are equivalent to themselves. */
static bool is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Decode the escape at in[i] ('%'). Returns the byte value, or -1 when the
 * escape is truncated, not hex, or %00 (a NUL would cut C strings short
 * further down the line). */
static int decode_escape(const char *in, size_t len, size_t i)
{
    if (len - i < 3) return -1;
    int hi = hex_value((unsigned char)in[i + 1]);
    int lo = hex_value((unsigned char)in[i + 2]);
    if (hi < 0 || lo < 0) return -1;
    int v = hi << 4 | lo;
    return v == 0 ? -1 : v;
}

bool path_is_normal(const char *path, size_t len)
{
    if (len == 0 || path[0] != '/') return false;
    for (size_t i = 0; i < len; i++) {
        char c = path[i];
        if (c == '%') return false;
        if (c == '/' && i + 1 < len && path[i + 1] == '.') {
            /* "/." or "/.." followed by the end or '/' is a dot segment */
            size_t j = i + 2;
            if (j == len || path[j] == '/') return false;
            if (path[j] == '.' && (j + 1 == len || path[j + 1] == '/')) return false;
        }
    }
    return true;
}

ssize_t path_normalize(const char *path, size_t len, char *out)
{
    if (len == 0 || path[0] != '/') return -1;

    size_t i = 0, o = 0;
    while (i < len) {
        /* path[i] is the '/' opening a segment; copy the segment decoding
         * unreserved escapes, so that a spelled-out dot segment ("%2e%2E")
         * is recognized below like a plain one */
        size_t seg_out = o;
        out[o++] = '/';
        i++;
        while (i < len && path[i] != '/') {
            char c = path[i];
            if (c != '%') {
                out[o++] = c;
                i++;
                continue;
            }
            int v = decode_escape(path, len, i);
            if (v < 0) return -1;
            if (is_unreserved((unsigned char)v)) {
                out[o++] = (char)v;
            } else {
                /* stays encoded as sent: "%2F" must not become a separator */
                out[o++] = '%';
                out[o++] = path[i + 1];
                out[o++] = path[i + 2];
            }
            i += 3;
        }

        size_t seg_len = o - seg_out - 1;
        const char *seg = out + seg_out + 1;
        bool dot = seg_len == 1 && seg[0] == '.';
        bool dotdot = seg_len == 2 && seg[0] == '.' && seg[1] == '.';
        if (!dot && !dotdot) continue;

        o = seg_out; /* drop "/." or "/.." */
        if (dotdot) {
            /* drop the previous segment with its '/'; none left means the
             * path climbs above the root */
            if (o == 0) return -1;
            do {
                o--;
            } while (out[o] != '/');
        }
        /* a dot segment at the end still names a directory: "/a/b/.." is "/a/" */
        if (i == len) out[o++] = '/';
    }
    return (ssize_t)o;
}

static ssize_t decode(const char *in, size_t len, char *out, bool plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        char c = in[i];
        if (c == '%') {
            int v = decode_escape(in, len, i);
            if (v < 0) return -1;
            out[o++] = (char)v;
            i += 3;
        } else {
            out[o++] = (plus_is_space && c == '+') ? ' ' : c;
            i++;
        }
    }
    return (ssize_t)o;
}

ssize_t path_decode(const char *in, size_t len, char *out)
{
    return decode(in, len, out, false);
}

ssize_t path_decode_query(const char *in, size_t len, char *out)
{
    return decode(in, len, out, true);
}

bool path_has_dot_segment(const char *s, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '/') continue;
        size_t n = i - start;
        if ((n == 1 && s[start] == '.') || (n == 2 && s[start] == '.' && s[start + 1] == '.'))
            return true;
        start = i + 1;
    }
    return false;
}
