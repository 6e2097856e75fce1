/* What the observe built-ins share (request_id, trace, access_log):
 * random ids from a fast per-thread generator, the wall clock that
 * access_log stamps its lines with (both replaceable by tests), and the
 * JSON string escaping of access_log (here so tests can reach it).
 *
 * The generator is xoshiro256** (core/rand.h) seeded from getrandom(2),
 * one per thread. Each worker
 * reseeds at VIE_EV_WORKER_START (request_id and trace register that
 * hook): workers forked from one supervisor would otherwise share the
 * parent's state and hand out the same ids. Ids are unique labels, not
 * secrets: nothing here is meant for tokens or keys. */
#ifndef VIE_MW_IDS_H
#define VIE_MW_IDS_H

#include <stddef.h>
#include <stdint.h>

#include "vie/vie.h"

/* A fixed seed, for tests that want the same ids on every run. */
void ids_seed(uint64_t seed);
/* A fresh seed from the system's entropy (getrandom, else time and pid). */
void ids_reseed(void);
/* 64 random bits. Seeds itself on first use if nobody did. */
uint64_t ids_next(void);
/* n_hex random lowercase hex digits and a NUL (out holds n_hex + 1
 * bytes), never all zeros: W3C trace and span ids must not be. */
void ids_hex(char *out, size_t n_hex);
/* The vie_app_hook that reseeds: register it for VIE_EV_WORKER_START. */
void ids_worker_start(vie_app *app, void *loop, void *arg);

/* Milliseconds since the Unix epoch (CLOCK_REALTIME), or the test's. */
typedef uint64_t (*ids_wall_clock)(void);
uint64_t ids_wall_ms(void);
/* Replace the wall clock (NULL restores the real one). For tests. */
void ids_set_wall_clock(ids_wall_clock fn);

/* Write s[0..n) to out as a quoted JSON string and return the end.
 * Quotes, backslash, control bytes and DEL are escaped (\n, \u0001...);
 * valid UTF-8 is copied; each byte that does not start a valid UTF-8
 * sequence (stray continuation, overlong form, surrogate, beyond
 * U+10FFFF, truncated) becomes \ufffd. out needs JSON_STR_MAX(n) bytes. */
#define JSON_STR_MAX(n) (6 * (size_t)(n) + 2)
char *json_str(char *out, const char *s, size_t n);

#endif
