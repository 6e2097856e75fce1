/* The auth built-in: bearer tokens and API keys, credentials from a file,
 * an environment variable and a C array, the vie_principal key, the 401
 * and 400 answers with their WWW-Authenticate, the per-layer counters,
 * the keyed hash and the constant-time comparison, and the YAML form. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/cfg.h"
#include "log_capture.h"
#include "mw/mw.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

/* Internal to auth.c. */
void mw_auth_siphash128(const uint8_t key[16], const void *data, size_t len, uint8_t out[16]);
int mw_auth_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

static const char *const CREDS[] = {"alice:tok-alice-1", "bob:tok-bob-2", NULL};

/* Answers with the principal the auth layer set ("-" when none). */
static vie_status who(vie_ctx *c, void *a)
{
    const char *p = vie_principal_get(c);
    return vie_send_text(c, 200, p ? p : "-");
}

static vie_app *app_with(const vie_auth_opts *o, const vie_layer_opts *lo, int *rc)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    assert_non_null(app);
    vie_route(app, "GET", "/who", who, NULL);
    vie_route(app, "GET", "/metrics", vie_metrics_handler, NULL);
    *rc = vie_use_auth(app, lo, o);
    return app;
}

/* An app with auth over CREDS (or o), ready to take requests. */
static vie_app *bearer_app(const vie_auth_opts *given)
{
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    o.tokens = CREDS;
    int rc;
    vie_app *app = app_with(given ? given : &o, NULL, &rc);
    assert_int_equal(rc, VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    return app;
}

static void done(vie_app *app)
{
    vie_test_end(app);
    vie_app_free(app);
}

/* GET /who with one header (or none); checks the status, returns the response. */
static vie_test_response *get(vie_app *app, const char *header, int status)
{
    const char *hs[] = {header, NULL};
    vie_test_response *r = vie_test_request(app, "GET", "/who", header ? hs : NULL, NULL, 0);
    assert_non_null(r);
    if (r->status != status) fprintf(stderr, "got %d: %s\n", r->status, r->raw);
    assert_int_equal(r->status, status);
    return r;
}

static void expect_ok(vie_app *app, const char *header, const char *principal)
{
    vie_test_response *r = get(app, header, 200);
    assert_string_equal(r->body, principal);
    vie_test_response_free(r);
}

static void expect_denied(vie_app *app, const char *header, int status, const char *www,
                          const char *detail)
{
    vie_test_response *r = get(app, header, status);
    assert_string_equal(vie_test_header(r, "WWW-Authenticate"), www);
    assert_string_equal(vie_test_header(r, "Content-Type"), "application/problem+json");
    char want[512];
    snprintf(want, sizeof want, "\"detail\":\"%s\"", detail);
    if (!strstr(r->body, want)) fprintf(stderr, "body: %s\nwant: %s\n", r->body, want);
    assert_non_null(strstr(r->body, want));
    vie_test_response_free(r);
}

/* ------------------------------------------------------------------ */
/* The hash and the comparison                                         */

static void siphash128_matches_reference_vectors(void **state)
{
    /* vectors_sip128 of the reference implementation: key 00..0f, input
     * 00 01 .. (len-1); lengths 0, 1, 8 (one full block) and 15. */
    uint8_t key[16], in[16], out[16];
    for (int i = 0; i < 16; i++)
        key[i] = in[i] = (uint8_t)i;
    static const struct {
        size_t len;
        uint8_t want[16];
    } v[] = {
        {0,
         {0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02,
          0x93}},
        {1,
         {0xda, 0x87, 0xc1, 0xd8, 0x6b, 0x99, 0xaf, 0x44, 0x34, 0x76, 0x59, 0x11, 0x9b, 0x22, 0xfc,
          0x45}},
        {8,
         {0x3b, 0x62, 0xa9, 0xba, 0x62, 0x58, 0xf5, 0x61, 0x0f, 0x83, 0xe2, 0x64, 0xf3, 0x14, 0x97,
          0xb4}},
        {15,
         {0x54, 0x93, 0xe9, 0x99, 0x33, 0xb0, 0xa8, 0x11, 0x7e, 0x08, 0xec, 0x0f, 0x97, 0xcf, 0xc3,
          0xd9}},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        mw_auth_siphash128(key, in, v[i].len, out);
        assert_memory_equal(out, v[i].want, 16);
    }
    /* Another key, another digest. */
    uint8_t k2[16] = {1};
    mw_auth_siphash128(k2, in, 8, out);
    assert_memory_not_equal(out, v[2].want, 16);
}

static void ct_equal_is_a_correct_comparison(void **state)
{
    assert_int_equal(mw_auth_ct_equal("secret", 6, "secret", 6), 1);
    assert_int_equal(mw_auth_ct_equal("", 0, "", 0), 1);
    assert_int_equal(mw_auth_ct_equal("secret", 6, "secreT", 6), 0);  /* last byte */
    assert_int_equal(mw_auth_ct_equal("secret", 6, "Secret", 6), 0);  /* first byte */
    assert_int_equal(mw_auth_ct_equal("secret", 6, "secret!", 7), 0); /* a prefix */
    assert_int_equal(mw_auth_ct_equal("secret!", 7, "secret", 6), 0);
    assert_int_equal(mw_auth_ct_equal("", 0, "x", 1), 0);
    assert_int_equal(mw_auth_ct_equal("x", 1, "", 0), 0);
    /* Zero bytes count: "a\0" is not "a". */
    assert_int_equal(mw_auth_ct_equal("a\0", 2, "a", 1), 0);
    /* Every single-bit difference anywhere in 16 bytes is seen. */
    uint8_t a[16] = {0}, b[16];
    for (int i = 0; i < 16 * 8; i++) {
        memcpy(b, a, 16);
        b[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(mw_auth_ct_equal(a, 16, b, 16), 0);
    }
    assert_int_equal(mw_auth_ct_equal(a, 16, a, 16), 1);
}

/* ------------------------------------------------------------------ */
/* Bearer                                                              */

static void bearer_token_lets_in_and_sets_the_principal(void **state)
{
    vie_app *app = bearer_app(NULL);
    expect_ok(app, "Authorization: Bearer tok-alice-1", "alice");
    expect_ok(app, "Authorization: Bearer tok-bob-2", "bob");
    /* The scheme is case-insensitive; one space or more. */
    expect_ok(app, "Authorization: bearer tok-bob-2", "bob");
    expect_ok(app, "Authorization: BEARER    tok-alice-1", "alice");
    done(app);
}

static void bearer_missing_gets_401_with_a_challenge(void **state)
{
    vie_app *app = bearer_app(NULL);
    expect_denied(app, NULL, 401, "Bearer realm=\"vie\"",
                  "this route needs a bearer token (Authorization: Bearer <token>)");
    done(app);
}

static void bearer_wrong_token_gets_invalid_token(void **state)
{
    vie_app *app = bearer_app(NULL);
    const char *www = "Bearer realm=\"vie\", error=\"invalid_token\"";
    expect_denied(app, "Authorization: Bearer tok-carol-3", 401, www,
                  "the bearer token is not valid");
    /* A prefix of a token, and a token with one more byte, are wrong too. */
    expect_denied(app, "Authorization: Bearer tok-alice-", 401, www,
                  "the bearer token is not valid");
    expect_denied(app, "Authorization: Bearer tok-alice-12", 401, www,
                  "the bearer token is not valid");
    /* Bob's token is not Alice's with another case. */
    expect_denied(app, "Authorization: Bearer TOK-BOB-2", 401, www,
                  "the bearer token is not valid");
    /* The principal alone is not a token. */
    expect_denied(app, "Authorization: Bearer alice", 401, www, "the bearer token is not valid");
    done(app);
}

static void bearer_other_scheme_is_missing_credentials(void **state)
{
    vie_app *app = bearer_app(NULL);
    const char *detail = "the Authorization header does not use the Bearer scheme";
    expect_denied(app, "Authorization: Basic YWxpY2U6cHc=", 401, "Bearer realm=\"vie\"", detail);
    /* "Bearer" must be a whole word. */
    expect_denied(app, "Authorization: Bearertok-alice-1", 401, "Bearer realm=\"vie\"", detail);
    expect_denied(app, "Authorization: tok-alice-1", 401, "Bearer realm=\"vie\"", detail);
    done(app);
}

static void bearer_empty_token_is_a_malformed_request(void **state)
{
    vie_app *app = bearer_app(NULL);
    const char *www = "Bearer realm=\"vie\", error=\"invalid_request\"";
    expect_denied(app, "Authorization: Bearer", 400, www,
                  "the Authorization header holds no token");
    expect_denied(app, "Authorization: Bearer    ", 400, www,
                  "the Authorization header holds no token");
    expect_denied(app, "Authorization: Bearer\ttok-alice-1", 400, www,
                  "the Authorization header separates Bearer from its token with a tab, not a "
                  "space");
    /* Two Authorization headers: which one would a proxy have checked? */
    const char *two[] = {"Authorization: Bearer tok-alice-1", "Authorization: Bearer tok-bob-2",
                         NULL};
    vie_test_response *r = vie_test_request(app, "GET", "/who", two, NULL, 0);
    assert_int_equal(r->status, 400);
    assert_string_equal(vie_test_header(r, "WWW-Authenticate"), www);
    assert_non_null(strstr(r->body, "more than one Authorization header"));
    vie_test_response_free(r);
    done(app);
}

static void realm_is_configurable(void **state)
{
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    o.tokens = CREDS;
    o.realm = "api.example";
    vie_app *app = bearer_app(&o);
    expect_denied(app, NULL, 401, "Bearer realm=\"api.example\"",
                  "this route needs a bearer token (Authorization: Bearer <token>)");
    done(app);
}

/* ------------------------------------------------------------------ */
/* API keys                                                            */

static void api_key_in_its_header(void **state)
{
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    o.scheme = VIE_AUTH_API_KEY;
    o.tokens = CREDS;
    vie_app *app = bearer_app(&o);
    expect_ok(app, "X-Api-Key: tok-bob-2", "bob");
    expect_ok(app, "x-api-key:   tok-alice-1  ", "alice"); /* OWS is not part of the value */
    expect_denied(app, NULL, 401, "ApiKey realm=\"vie\", header=\"X-Api-Key\"",
                  "this route needs an API key");
    const char *www = "ApiKey realm=\"vie\", header=\"X-Api-Key\", error=\"invalid_key\"";
    expect_denied(app, "X-Api-Key: tok-bob-3", 401, www, "the API key is not valid");
    expect_denied(app, "X-Api-Key: Bearer tok-bob-2", 401, www, "the API key is not valid");
    expect_denied(app, "X-Api-Key:", 401, www, "the API key is empty");
    /* The bearer header means nothing to an api_key layer. */
    expect_denied(app, "Authorization: Bearer tok-bob-2", 401,
                  "ApiKey realm=\"vie\", header=\"X-Api-Key\"", "this route needs an API key");
    done(app);
}

static void api_key_header_is_configurable(void **state)
{
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    o.scheme = VIE_AUTH_API_KEY;
    o.header = "X-Token";
    o.tokens = CREDS;
    vie_app *app = bearer_app(&o);
    expect_ok(app, "X-Token: tok-alice-1", "alice");
    expect_denied(app, "X-Api-Key: tok-alice-1", 401, "ApiKey realm=\"vie\", header=\"X-Token\"",
                  "this route needs an API key");
    done(app);
}

/* ------------------------------------------------------------------ */
/* Where credentials come from                                         */

/* A file with text; returns its path (static buffer of the caller). */
static void write_file(char *path, size_t cap, const char *text, int mode)
{
    snprintf(path, cap, "/tmp/vie-auth-test-%d-XXXXXX", (int)getpid());
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(path, (mode_t)mode);
}

/* vie_use_auth with a file holding text: the return code and the log. */
static int use_with_file(const char *text, char **log, char *path, size_t cap)
{
    write_file(path, cap, text, 0600);
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    o.tokens_file = path;
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "GET", "/who", who, NULL);
    capture k;
    capture_begin(&k);
    int rc = vie_use_auth(app, NULL, &o);
    *log = capture_end(&k);
    if (rc == VIE_OK) {
        assert_int_equal(vie_test_begin(app), VIE_OK);
        expect_ok(app, "Authorization: Bearer s3cr3t-carol", "carol");
        expect_ok(app, "Authorization: Bearer s3cr3t:dave", "dave"); /* ':' in a token */
        vie_test_end(app);
    }
    vie_app_free(app);
    unlink(path);
    return rc;
}

static void tokens_file_lines_comments_and_blanks(void **state)
{
    char path[128], *log;
    int rc = use_with_file("# who:token\n\n  carol : s3cr3t-carol  \r\n\t# indented comment\n"
                           "dave:s3cr3t:dave",
                           &log, path, sizeof path);
    assert_int_equal(rc, VIE_OK);
    assert_string_equal(log, "");
    free(log);
}

static void tokens_file_errors_name_file_and_line(void **state)
{
    static const struct {
        const char *text;
        int line;
        const char *what;
    } cases[] = {
        {"carol:s3cr3t-carol\n# fine\nno-colon-here\n", 3, "expected \"principal:token\""},
        {"carol:s3cr3t-carol\n:orphan-token\n", 2, "the principal (before ':') is empty"},
        {"carol:\n", 1, "the token (after ':') is empty"},
        {"\n\ncarol:two words\n", 3, "the token holds a space"},
        {"car ol:tok\n", 1, "the principal holds a space"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[128], *log, where[160];
        int rc = use_with_file(cases[i].text, &log, path, sizeof path);
        assert_int_equal(rc, VIE_EINVAL);
        snprintf(where, sizeof where, "%s:%d: ", path, cases[i].line);
        if (!log_has_line(log, "ERROR", "auth auth: option tokens_file: ", where, cases[i].what,
                          NULL))
            fprintf(stderr, "case %zu: %s\n", i, log);
        assert_true(log_has_line(log, "ERROR", "auth auth: option tokens_file: ", where,
                                 cases[i].what, NULL));
        /* Never a token in the log. */
        assert_null(strstr(log, "s3cr3t"));
        assert_null(strstr(log, "orphan-token"));
        assert_null(strstr(log, "two words"));
        free(log);
    }
}

static void tokens_file_missing_is_refused(void **state)
{
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    o.tokens_file = "/nonexistent/vie-tokens.txt";
    vie_app *app = vie_app_new(NULL);
    capture k;
    capture_begin(&k);
    int rc = vie_use_auth(app, NULL, &o);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_EINVAL);
    assert_true(log_has_line(log, "ERROR", "auth auth: option tokens_file: ",
                             "tokens_file /nonexistent/vie-tokens.txt cannot be read: "
                             "No such file or directory",
                             NULL));
    free(log);
    vie_app_free(app);
}

static void tokens_file_readable_by_all_is_warned_about(void **state)
{
    char path[128];
    write_file(path, sizeof path, "carol:s3cr3t-carol\n", 0644);
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    o.tokens_file = path;
    vie_app *app = vie_app_new(NULL);
    capture k;
    capture_begin(&k);
    int rc = vie_use_auth(app, NULL, &o);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_OK);
    assert_true(log_has_line(log, "WARN", path, "readable by every user", NULL));
    free(log);
    vie_app_free(app);
    unlink(path);
}

static int use_with_env(const char *value, char **log)
{
    if (value)
        setenv("VIE_TEST_TOKENS", value, 1);
    else
        unsetenv("VIE_TEST_TOKENS");
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    o.tokens_env = "VIE_TEST_TOKENS";
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "GET", "/who", who, NULL);
    capture k;
    capture_begin(&k);
    int rc = vie_use_auth(app, NULL, &o);
    *log = capture_end(&k);
    if (rc == VIE_OK) {
        assert_int_equal(vie_test_begin(app), VIE_OK);
        expect_ok(app, "Authorization: Bearer e-tok-1", "erin");
        expect_ok(app, "Authorization: Bearer f-tok-2", "frank");
        vie_test_end(app);
    }
    vie_app_free(app);
    unsetenv("VIE_TEST_TOKENS");
    return rc;
}

static void tokens_env_is_a_comma_separated_list(void **state)
{
    char *log;
    assert_int_equal(use_with_env("erin:e-tok-1,frank:f-tok-2", &log), VIE_OK);
    free(log);
    assert_int_equal(use_with_env(" erin:e-tok-1 , frank : f-tok-2 ", &log), VIE_OK);
    free(log);
}

static void tokens_env_errors(void **state)
{
    static const struct {
        const char *value;
        const char *what;
    } cases[] = {
        {NULL, "tokens_env: the variable VIE_TEST_TOKENS is not set"},
        {"", "tokens_env: the variable VIE_TEST_TOKENS is empty"},
        {"erin:e-tok-1,,frank:f-tok-2", "$VIE_TEST_TOKENS entry 2: empty (a stray comma?)"},
        {"erin:e-tok-1,frank:f-tok-2,", "$VIE_TEST_TOKENS entry 3: empty (a stray comma?)"},
        {"erin:e-tok-1,frank", "$VIE_TEST_TOKENS entry 2: expected \"principal:token\""},
        {"erin:", "$VIE_TEST_TOKENS entry 1: the token (after ':') is empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *log;
        assert_int_equal(use_with_env(cases[i].value, &log), VIE_EINVAL);
        if (!log_has_line(log, "ERROR", "auth auth: option tokens_env: ", cases[i].what, NULL))
            fprintf(stderr, "case %zu: %s\n", i, log);
        assert_true(
            log_has_line(log, "ERROR", "auth auth: option tokens_env: ", cases[i].what, NULL));
        assert_null(strstr(log, "e-tok-1"));
        free(log);
    }
}

/* All three sources at once: every credential counts. */
static void sources_combine(void **state)
{
    char path[128];
    write_file(path, sizeof path, "carol:c-file\n", 0600);
    setenv("VIE_TEST_TOKENS", "erin:e-env", 1);
    const char *arr[] = {"gina:g-array", NULL};
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    o.tokens_file = path;
    o.tokens_env = "VIE_TEST_TOKENS";
    o.tokens = arr;
    vie_app *app = bearer_app(&o);
    expect_ok(app, "Authorization: Bearer c-file", "carol");
    expect_ok(app, "Authorization: Bearer e-env", "erin");
    expect_ok(app, "Authorization: Bearer g-array", "gina");
    done(app);
    unsetenv("VIE_TEST_TOKENS");
    unlink(path);
}

static int refused(const vie_auth_opts *o, const char *needle1, const char *needle2)
{
    vie_app *app = vie_app_new(NULL);
    capture k;
    capture_begin(&k);
    int rc = vie_use_auth(app, NULL, o);
    char *log = capture_end(&k);
    if (!log_has_line(log, "ERROR", "auth auth: ", needle1, needle2, NULL))
        fprintf(stderr, "log: %s\n", log);
    assert_true(log_has_line(log, "ERROR", "auth auth: ", needle1, needle2, NULL));
    assert_null(strstr(log, "same-tok"));
    free(log);
    vie_app_free(app);
    return rc;
}

static void bad_options_are_refused(void **state)
{
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    assert_int_equal(refused(&o, "no credentials", NULL), VIE_EINVAL);

    const char *empty[] = {NULL};
    o.tokens = empty;
    assert_int_equal(refused(&o, "no credentials", NULL), VIE_EINVAL);

    const char *dup[] = {"alice:same-tok", "bob:other", "carol:same-tok", NULL};
    o.tokens = dup;
    assert_int_equal(refused(&o, "option tokens: tokens[0] and tokens[2] hold the same token",
                             "(principals alice and carol)"),
                     VIE_EINVAL);

    o.tokens = CREDS;
    o.realm = "a\"b";
    assert_int_equal(refused(&o, "option realm: ", "must be non-empty printable ASCII"),
                     VIE_EINVAL);
    o.realm = "";
    assert_int_equal(refused(&o, "option realm: ", NULL), VIE_EINVAL);
    o.realm = "vie";
    o.header = "X Api";
    assert_int_equal(refused(&o, "option header: ", "not a valid header name"), VIE_EINVAL);
    o.header = NULL;
    o.scheme = (vie_auth_scheme)7;
    assert_int_equal(refused(&o, "option scheme: ", NULL), VIE_EINVAL);
    o.scheme = VIE_AUTH_BEARER;
    o.tokens_env = "";
    assert_int_equal(refused(&o, "option tokens_env: ", "empty variable name"), VIE_EINVAL);

    assert_int_equal(vie_use_auth(NULL, NULL, &o), VIE_EINVAL);
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_use_auth(app, NULL, NULL), VIE_EINVAL);
    vie_app_free(app);
}

/* One owner for vie_principal per app: a second auth layer is refused at
 * once, naming the first. */
static void a_second_auth_layer_is_refused(void **state)
{
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    o.tokens = CREDS;
    vie_app *app = vie_app_new(NULL);
    vie_layer_opts lo1 = {.name = "auth.api"}, lo2 = {.name = "auth.admin"};
    assert_int_equal(vie_use_auth(app, &lo1, &o), VIE_OK);
    capture k;
    capture_begin(&k);
    int rc = vie_use_auth(app, &lo2, &o);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_EINVAL);
    assert_true(log_has_line(log, "ERROR",
                             "auth auth.admin: ", "auth.api already sets vie_principal", NULL));
    free(log);
    vie_app_free(app);
}

static void refused_once_frozen(void **state)
{
    vie_app *app = bearer_app(NULL);
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    o.tokens = CREDS;
    assert_int_equal(vie_use_auth(app, NULL, &o), VIE_EFROZEN);
    done(app);
}

/* ------------------------------------------------------------------ */
/* The key, placement, counters                                        */

/* A layer after auth sees the principal; a route outside its group does
 * not. */
static vie_status read_principal(vie_ctx *c, void *st)
{
    const char *p = vie_principal_get(c);
    vie_header_add(c, "X-Seen", p ? p : "-");
    /* Only auth may write the key. */
    assert_int_not_equal(vie_principal_set(c, "mallory"), VIE_OK);
    return VIE_NEXT;
}

static void principal_key_is_owned_and_scoped(void **state)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_group *api;
    assert_int_equal(vie_group_new(app, NULL, "/api", &api), VIE_OK);
    vie_route_opts ro = {.group = api, .requires = (const char *const[]){"auth", NULL}};
    assert_int_equal(vie_route_with(app, "GET", "/who", who, NULL, &ro), VIE_OK);
    vie_route(app, "GET", "/open", who, NULL);
    vie_middleware reader = {.name = "reader", .phase = VIE_APP, .before = read_principal};
    assert_int_equal(vie_use(app, &reader, NULL), VIE_OK);
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    o.tokens = CREDS;
    vie_layer_opts lo = {.name = "auth.api", .group = api};
    assert_int_equal(vie_use_auth(app, &lo, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    const char *hs[] = {"Authorization: Bearer tok-bob-2", NULL};
    vie_test_response *r = vie_test_request(app, "GET", "/api/who", hs, NULL, 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "bob");
    assert_string_equal(vie_test_header(r, "X-Seen"), "bob");
    assert_string_equal(r->trail[0].layer, "auth.api");
    vie_test_response_free(r);

    r = vie_test_request(app, "GET", "/open", hs, NULL, 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "-"); /* no auth on this route */
    vie_test_response_free(r);

    r = vie_test_request(app, "GET", "/api/who", NULL, NULL, 0);
    assert_int_equal(r->status, 401);
    assert_null(vie_test_header(r, "X-Seen")); /* the chain stopped at auth */
    vie_test_response_free(r);
    done(app);
}

static bool has_line(const char *text, const char *line)
{
    const char *p = strstr(text, line);
    return p && (p == text || p[-1] == '\n');
}

static void decisions_are_counted_per_layer(void **state)
{
    vie_auth_opts o;
    vie_auth_opts_init(&o);
    o.tokens = CREDS;
    int rc;
    vie_layer_opts lo = {.name = "auth.api"};
    vie_app *app = app_with(&o, &lo, &rc);
    assert_int_equal(rc, VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response_free(get(app, "Authorization: Bearer tok-alice-1", 200));
    vie_test_response_free(get(app, "Authorization: Bearer tok-bob-2", 200));
    vie_test_response_free(get(app, NULL, 401));
    vie_test_response_free(get(app, "Authorization: Basic eA==", 401));
    vie_test_response_free(get(app, "Authorization: Bearer nope", 401));
    vie_test_response_free(get(app, "Authorization: Bearer", 400));
    char *m = vie_app_metrics(app);
    assert_true(has_line(m, "# TYPE vie_auth_decisions_total counter\n"));
    assert_true(has_line(m, "vie_auth_decisions_total{layer=\"auth.api\",result=\"allowed\"} 2\n"));
    assert_true(has_line(m, "vie_auth_decisions_total{layer=\"auth.api\",result=\"missing\"} 2\n"));
    assert_true(has_line(m, "vie_auth_decisions_total{layer=\"auth.api\",result=\"invalid\"} 2\n"));
    free(m);
    done(app);
}

/* ------------------------------------------------------------------ */
/* YAML                                                                */

/* Run mw_auth_from_yaml over text (the instance's parameters); returns
 * its code and, in *errs, every config error joined by newlines. */
static int from_yaml(vie_app *app, const char *text, char **errs)
{
    cfg_ctx cx;
    if (cfg_load_text(&cx, "vie.yaml", text) != 0) {
        cfg_print_errors(&cx, stderr);
        fail_msg("the test's YAML does not load");
    }
    cfg_params p;
    cfg_params_init(&p, &cx, cx.root, "middleware \"auth\"");
    int rc = mw_auth_from_yaml(app, NULL, &p);
    size_t n = 1;
    for (size_t i = 0; i < cx.errs.n; i++)
        n += strlen(cx.errs.lines[i]) + 1;
    *errs = calloc(1, n);
    for (size_t i = 0; i < cx.errs.n; i++) {
        strcat(*errs, cx.errs.lines[i]);
        strcat(*errs, "\n");
    }
    cfg_free(&cx);
    return rc;
}

static void yaml_reads_every_key(void **state)
{
    char path[128];
    write_file(path, sizeof path, "carol:c-file\n", 0600);
    setenv("VIE_TEST_TOKENS", "erin:e-env", 1);
    char text[512];
    snprintf(text, sizeof text,
             "scheme: api_key\nheader: X-Key\nrealm: inner\ntokens_file: %s\n"
             "tokens_env: VIE_TEST_TOKENS\ntokens: [\"gina:g-yaml\"]\n",
             path);
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "GET", "/who", who, NULL);
    char *errs;
    assert_int_equal(from_yaml(app, text, &errs), VIE_OK);
    assert_string_equal(errs, "");
    free(errs);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    expect_ok(app, "X-Key: c-file", "carol");
    expect_ok(app, "X-Key: e-env", "erin");
    expect_ok(app, "X-Key: g-yaml", "gina");
    expect_denied(app, NULL, 401, "ApiKey realm=\"inner\", header=\"X-Key\"",
                  "this route needs an API key");
    done(app);
    unsetenv("VIE_TEST_TOKENS");
    unlink(path);
}

/* A relative tokens_file is found next to the YAML file. */
static void yaml_tokens_file_is_relative_to_the_config(void **state)
{
    char dir[] = "/tmp/vie-auth-dir-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char tokens[256], yaml[256];
    snprintf(tokens, sizeof tokens, "%s/tokens.txt", dir);
    snprintf(yaml, sizeof yaml, "%s/vie.yaml", dir);
    FILE *f = fopen(tokens, "w");
    fputs("hank:h-rel\n", f);
    fclose(f);
    chmod(tokens, 0600);
    f = fopen(yaml, "w");
    fputs("tokens_file: tokens.txt\n", f);
    fclose(f);
    cfg_ctx cx;
    assert_int_equal(cfg_load(&cx, yaml, NULL, false), 0);
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "GET", "/who", who, NULL);
    cfg_params p;
    cfg_params_init(&p, &cx, cx.root, "middleware \"auth\"");
    assert_int_equal(mw_auth_from_yaml(app, NULL, &p), VIE_OK);
    assert_int_equal(cx.errs.n, 0);
    cfg_free(&cx);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    expect_ok(app, "Authorization: Bearer h-rel", "hank");
    done(app);
    unlink(tokens);
    unlink(yaml);
    rmdir(dir);
}

static void yaml_errors_point_at_the_key(void **state)
{
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"scheme: basic\ntokens: [\"a:b\"]\n",
         "vie.yaml:1:9: middleware \"auth\": key \"scheme\": "},
        {"tokens: [\"a:b\"]\nrealn: x\n",
         "vie.yaml:2:1: unknown key \"realn\" in middleware \"auth\"; did you mean \"realm\"?"},
        {"tokens: [\"a:b\", \"c:b\"]\n",
         "vie.yaml:1:9: middleware \"auth\": key \"tokens\": tokens[0] and tokens[1] hold the "
         "same token (principals a and c)"},
        {"tokens: [\"ab\"]\n",
         "vie.yaml:1:9: middleware \"auth\": key \"tokens\": tokens[0]: expected "
         "\"principal:token\", found no ':'"},
        {"tokens_env: VIE_TEST_UNSET_VAR\n",
         "vie.yaml:1:13: middleware \"auth\": key \"tokens_env\": tokens_env: the variable "
         "VIE_TEST_UNSET_VAR is not set"},
        {"tokens_file: /nonexistent/t.txt\n",
         "vie.yaml:1:14: middleware \"auth\": key \"tokens_file\": tokens_file /nonexistent/t.txt "
         "cannot be read: No such file or directory"},
        {"realm: x\n", "middleware \"auth\": no credentials: give at least one"},
    };
    unsetenv("VIE_TEST_UNSET_VAR");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vie_log_set_level(VIE_LOG_OFF);
        vie_app *app = vie_app_new(NULL);
        char *errs;
        assert_int_equal(from_yaml(app, cases[i].text, &errs), VIE_EINVAL);
        if (!strstr(errs, cases[i].want))
            fprintf(stderr, "case %zu:\n got: %s\nwant: %s\n", i, errs, cases[i].want);
        assert_non_null(strstr(errs, cases[i].want));
        free(errs);
        vie_app_free(app);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(siphash128_matches_reference_vectors),
        cmocka_unit_test(ct_equal_is_a_correct_comparison),
        cmocka_unit_test(bearer_token_lets_in_and_sets_the_principal),
        cmocka_unit_test(bearer_missing_gets_401_with_a_challenge),
        cmocka_unit_test(bearer_wrong_token_gets_invalid_token),
        cmocka_unit_test(bearer_other_scheme_is_missing_credentials),
        cmocka_unit_test(bearer_empty_token_is_a_malformed_request),
        cmocka_unit_test(realm_is_configurable),
        cmocka_unit_test(api_key_in_its_header),
        cmocka_unit_test(api_key_header_is_configurable),
        cmocka_unit_test(tokens_file_lines_comments_and_blanks),
        cmocka_unit_test(tokens_file_errors_name_file_and_line),
        cmocka_unit_test(tokens_file_missing_is_refused),
        cmocka_unit_test(tokens_file_readable_by_all_is_warned_about),
        cmocka_unit_test(tokens_env_is_a_comma_separated_list),
        cmocka_unit_test(tokens_env_errors),
        cmocka_unit_test(sources_combine),
        cmocka_unit_test(bad_options_are_refused),
        cmocka_unit_test(a_second_auth_layer_is_refused),
        cmocka_unit_test(refused_once_frozen),
        cmocka_unit_test(principal_key_is_owned_and_scoped),
        cmocka_unit_test(decisions_are_counted_per_layer),
        cmocka_unit_test(yaml_reads_every_key),
        cmocka_unit_test(yaml_tokens_file_is_relative_to_the_config),
        cmocka_unit_test(yaml_errors_point_at_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
