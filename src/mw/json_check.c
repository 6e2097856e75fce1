/* Strict JSON (RFC 8259) well-formedness, for validate's json_body: a
 * state machine over the bytes with a bit stack of open containers (see
 * json_check.h for what is refused and why). */
#include "mw/json_check.h"

#include <stdint.h>

_Static_assert(JSON_CHECK_MAX_DEPTH <= 64, "the container stack is one 64-bit word");

/* What the next token may be. */
typedef enum {
    ST_VALUE,          /* a value: the top level, after ':' */
    ST_ELEMENT,        /* after ',' in an array: a value, never ']' */
    ST_VALUE_OR_CLOSE, /* after '[' */
    ST_KEY_OR_CLOSE,   /* after '{' */
    ST_KEY,            /* after ',' in an object: a key, never '}' */
    ST_COLON,          /* after a key */
    ST_AFTER,          /* after a value */
} state;

typedef struct scan {
    const unsigned char *s;
    size_t n, i;
    json_error *err;
} scan;

static bool fail(scan *x, size_t at, const char *msg)
{
    if (x->err) {
        x->err->offset = at;
        x->err->msg = msg;
    }
    return false;
}

static int hex(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Four hex digits at i; -1 (and err set) if not. */
static long hex4(scan *x, size_t i)
{
    long v = 0;
    for (size_t k = 0; k < 4; k++) {
        if (i + k >= x->n) return fail(x, x->n, "unterminated \\u escape"), -1;
        int d = hex(x->s[i + k]);
        if (d < 0) return fail(x, i + k, "expected 4 hex digits after \\u"), -1;
        v = v << 4 | d;
    }
    return v;
}

/* One UTF-8 sequence starting at i with lead byte c >= 0x80; returns
 * its length, 0 (err set) if invalid. The ranges of RFC 3629 section 4. */
static size_t utf8(scan *x, size_t i)
{
    unsigned char c = x->s[i];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlong forms */
        else if (c == 0xED)
            hi = 0x9F; /* no encoded surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90; /* no overlong forms */
        else if (c == 0xF4)
            hi = 0x8F; /* nothing past U+10FFFF */
    } else
        return fail(x, i, "invalid UTF-8 (a byte that cannot start a character)"), 0;
    for (size_t k = 1; k < len; k++) {
        if (i + k >= x->n) return fail(x, x->n, "unterminated string"), 0;
        unsigned char b = x->s[i + k];
        if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF))
            return fail(x, i + k, "invalid UTF-8 (a bad continuation byte)"), 0;
    }
    return len;
}

/* A string whose opening quote is at x->i; leaves x->i after the closing one. */
static bool string(scan *x)
{
    size_t i = x->i + 1;
    for (;;) {
        if (i >= x->n) return fail(x, x->n, "unterminated string");
        unsigned char c = x->s[i];
        if (c == '"') break;
        if (c < 0x20) return fail(x, i, "a control character in a string (escape it)");
        if (c >= 0x80) {
            size_t len = utf8(x, i);
            if (!len) return false;
            i += len;
            continue;
        }
        if (c != '\\') {
            i++;
            continue;
        }
        if (i + 1 >= x->n) return fail(x, x->n, "unterminated string");
        c = x->s[i + 1];
        if (c != 'u') {
            if (!(c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
                  c == 'r' || c == 't'))
                return fail(x, i, "an invalid escape");
            i += 2;
            continue;
        }
        long u = hex4(x, i + 2);
        if (u < 0) return false;
        if (u >= 0xDC00 && u <= 0xDFFF) return fail(x, i, "a lone low surrogate escape");
        if (u >= 0xD800 && u <= 0xDBFF) {
            /* must be followed by \uDC00..\uDFFF */
            size_t j = i + 6;
            if (j + 1 >= x->n || x->s[j] != '\\' || x->s[j + 1] != 'u')
                return fail(x, i, "a lone high surrogate escape");
            long lo = hex4(x, j + 2);
            if (lo < 0) return false;
            if (lo < 0xDC00 || lo > 0xDFFF) return fail(x, i, "a lone high surrogate escape");
            i = j + 6;
            continue;
        }
        i += 6;
    }
    x->i = i + 1;
    return true;
}

static bool digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool number(scan *x)
{
    const unsigned char *s = x->s;
    size_t i = x->i, n = x->n;
    if (s[i] == '-') i++;
    if (i >= n || !digit(s[i])) return fail(x, i, "expected a digit");
    if (s[i] == '0') {
        i++;
        if (i < n && digit(s[i])) return fail(x, i, "a leading zero in a number");
    } else
        while (i < n && digit(s[i]))
            i++;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !digit(s[i])) return fail(x, i, "expected a digit after '.'");
        while (i < n && digit(s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || !digit(s[i])) return fail(x, i, "expected a digit in the exponent");
        while (i < n && digit(s[i]))
            i++;
    }
    x->i = i;
    return true;
}

static bool literal(scan *x, const char *word, size_t len)
{
    for (size_t k = 0; k < len; k++)
        if (x->i + k >= x->n || x->s[x->i + k] != (unsigned char)word[k])
            return fail(x, x->i + k < x->n ? x->i + k : x->n, "expected a value");
    x->i += len;
    return true;
}

bool json_check(const char *text, size_t len, json_error *err)
{
    scan x = {(const unsigned char *)text, len, 0, err};
    uint64_t objects = 0; /* bit d-1: the container at depth d is an object */
    unsigned depth = 0;
    state st = ST_VALUE;
    if (!text && len) return fail(&x, 0, "no body");
    for (;;) {
        while (x.i < x.n &&
               (x.s[x.i] == ' ' || x.s[x.i] == '\t' || x.s[x.i] == '\n' || x.s[x.i] == '\r'))
            x.i++;
        if (x.i >= x.n) {
            if (st == ST_AFTER && depth == 0) return true;
            return fail(&x, x.n, x.n == 0 ? "empty body: expected a value" : "unexpected end");
        }
        unsigned char c = x.s[x.i];
        switch (st) {
        case ST_VALUE_OR_CLOSE:
            if (c == ']') {
                depth--;
                x.i++;
                st = ST_AFTER;
                continue;
            }
            /* fall through */
        case ST_VALUE:
        case ST_ELEMENT:
            if (c == '{' || c == '[') {
                if (depth == JSON_CHECK_MAX_DEPTH)
                    return fail(&x, x.i, "nested deeper than 64 arrays and objects");
                depth++;
                if (c == '{')
                    objects |= (uint64_t)1 << (depth - 1);
                else
                    objects &= ~((uint64_t)1 << (depth - 1));
                st = c == '{' ? ST_KEY_OR_CLOSE : ST_VALUE_OR_CLOSE;
                x.i++;
                continue;
            }
            if (c == '"') {
                if (!string(&x)) return false;
            } else if (c == '-' || digit(c)) {
                if (!number(&x)) return false;
            } else if (c == 't') {
                if (!literal(&x, "true", 4)) return false;
            } else if (c == 'f') {
                if (!literal(&x, "false", 5)) return false;
            } else if (c == 'n') {
                if (!literal(&x, "null", 4)) return false;
            } else
                return fail(&x, x.i,
                            st == ST_ELEMENT && c == ']' ? "expected a value (no trailing comma)"
                                                         : "expected a value");
            st = ST_AFTER;
            continue;
        case ST_KEY_OR_CLOSE:
            if (c == '}') {
                depth--;
                x.i++;
                st = ST_AFTER;
                continue;
            }
            /* fall through */
        case ST_KEY:
            if (c != '"')
                return fail(&x, x.i,
                            st == ST_KEY ? "expected a string key (no trailing comma)"
                                         : "expected a string key or '}'");
            if (!string(&x)) return false;
            st = ST_COLON;
            continue;
        case ST_COLON:
            if (c != ':') return fail(&x, x.i, "expected ':' after a key");
            x.i++;
            st = ST_VALUE;
            continue;
        case ST_AFTER: {
            if (depth == 0) return fail(&x, x.i, "unexpected data after the value");
            bool obj = objects >> (depth - 1) & 1;
            if (c == ',') {
                x.i++;
                st = obj ? ST_KEY : ST_ELEMENT;
                continue;
            }
            if (c == (obj ? '}' : ']')) {
                depth--;
                x.i++;
                continue;
            }
            return fail(&x, x.i, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
        }
    }
}
