/* Random ids for request_id and trace (xoshiro256**, per thread), and
 * the replaceable wall clock of access_log. See ids.h. */
#include "mw/ids.h"

#include "core/rand.h"

#include <stdbool.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Per thread: the loop thread of each worker has its own, and a thread
 * of the pool that ever asked would get its own rather than race. The
 * generator is core/rand.h's xoshiro256**. */
static _Thread_local struct {
    rng r;
    bool seeded;
} ids;

void ids_seed(uint64_t seed)
{
    rng_seed(&ids.r, seed);
    ids.seeded = true;
}

void ids_reseed(void)
{
    /* All 256 bits of state from the kernel when it can: workers then
     * share nothing. Else a 64-bit seed of time and pid. */
    uint64_t s[4] = {0};
    size_t got = 0;
    while (got < sizeof s) {
        ssize_t n = getrandom((char *)s + got, sizeof s - got, GRND_NONBLOCK);
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (got < sizeof s || (s[0] | s[1] | s[2] | s[3]) == 0) {
        ids_seed(rng_mix(rng_entropy_seed(), (uint64_t)getpid()));
        return;
    }
    memcpy(ids.r.s, s, sizeof s);
    ids.seeded = true;
}

uint64_t ids_next(void)
{
    if (__builtin_expect(!ids.seeded, 0)) ids_reseed();
    return rng_next(&ids.r);
}

void ids_hex(char *out, size_t n_hex)
{
    static const char digits[] = "0123456789abcdef";
    bool nonzero;
    do {
        nonzero = false;
        uint64_t r = 0;
        for (size_t i = 0; i < n_hex; i++) {
            if (i % 16 == 0) r = ids_next();
            unsigned d = (unsigned)(r & 15);
            r >>= 4;
            nonzero |= d != 0;
            out[i] = digits[d];
        }
    } while (!nonzero && n_hex > 0);
    out[n_hex] = '\0';
}

void ids_worker_start(vie_app *app, void *loop, void *arg)
{
    (void)app;
    (void)loop;
    (void)arg;
    ids_reseed();
}

static ids_wall_clock wall_override;

uint64_t ids_wall_ms(void)
{
    if (wall_override) return wall_override();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ids_set_wall_clock(ids_wall_clock fn)
{
    wall_override = fn;
}

static bool cont(unsigned char ch)
{
    return (ch & 0xc0) == 0x80;
}

/* The length of the valid UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) return n >= 2 && cont(s[1]) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
        return n >= 3 && s[1] >= lo && s[1] <= hi && cont(s[2]) ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
        return n >= 4 && s[1] >= lo && s[1] <= hi && cont(s[2]) && cont(s[3]) ? 4 : 0;
    }
    return 0;
}

char *json_str(char *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    char *p = out;
    *p++ = '"';
    for (size_t i = 0; i < n;) {
        unsigned char ch = u[i];
        if (ch >= 0x80) {
            size_t k = utf8_len(u + i, n - i);
            if (k) {
                memcpy(p, u + i, k);
                p += k;
                i += k;
            } else {
                memcpy(p, "\\ufffd", 6);
                p += 6;
                i++;
            }
            continue;
        }
        i++;
        if (ch == '"' || ch == '\\') {
            *p++ = '\\';
            *p++ = (char)ch;
        } else if (ch >= 0x20 && ch != 0x7f) {
            *p++ = (char)ch;
        } else {
            *p++ = '\\';
            switch (ch) {
            case '\n': *p++ = 'n'; break;
            case '\r': *p++ = 'r'; break;
            case '\t': *p++ = 't'; break;
            case '\b': *p++ = 'b'; break;
            case '\f': *p++ = 'f'; break;
            default:
                memcpy(p, "u00", 3);
                p[3] = hex[ch >> 4];
                p[4] = hex[ch & 15];
                p += 5;
            }
        }
    }
    *p++ = '"';
    return p;
}
