/* Typed request values: the typed accessors, the three write policies,
 * owners checked at freeze, destructors, unregistered keys. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_capture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/app.h"
#include "vie/vie.h"
#include "vie/vie_test.h"

struct user {
    int id;
    const char *name;
};

VIE_KEY(user, const struct user *, VIE_KEY_WRITE_ONCE)
VIE_KEY(role, char *, VIE_KEY_OWNER)
VIE_KEY(counter, uint64_t, VIE_KEY_OVERWRITE)
VIE_KEY(ratio, double, VIE_KEY_OVERWRITE)
VIE_KEY(flag, bool, VIE_KEY_WRITE_ONCE)
VIE_KEY(blob, char *, VIE_KEY_WRITE_ONCE)
VIE_KEY(note, char *, VIE_KEY_OVERWRITE)
VIE_KEY(stray, int, VIE_KEY_WRITE_ONCE)   /* never registered */
VIE_KEY(foreign, int, VIE_KEY_WRITE_ONCE) /* registered with another app only */

/* A second key spelled "user": a different key all the same. */
static vie_key other_user_key = {"user", VIE_KEY_WRITE_ONCE, NULL, 0, 0};

static vie_key *const all_keys[] = {&user_key,    &role_key,      &counter_key, &ratio_key,
                                    &flag_key,    &blob_key,      &note_key,    &stray_key,
                                    &foreign_key, &other_user_key};

/* ------------------------------------------------------------------ */
/* Destructors: each destroyed value is recorded, then freed           */

static char destroyed[512]; /* "value;" per call, in order */
static int n_destroyed;

static void destroy_string(void *value)
{
    char *s = *(char **)value;
    n_destroyed++;
    strncat(destroyed, s ? s : "(null)", sizeof destroyed - strlen(destroyed) - 1);
    strncat(destroyed, ";", sizeof destroyed - strlen(destroyed) - 1);
    free(s);
}

/* ------------------------------------------------------------------ */
/* Layers scripted by a table of steps                                 */

typedef enum op {
    OP_END = 0,
    SET_USER,       /* user_set(arg ? &other_user : &the_user) */
    SET_OTHER_USER, /* the key also spelled "user" := &other_user */
    SET_ROLE,       /* role_set(strdup(str)) */
    SET_BLOB,       /* blob_set(strdup(str)) */
    SET_NOTE,       /* note_set(strdup(str)) */
    SET_COUNTER,    /* counter_set(arg) */
    SET_STRAY,      /* stray_set(1) */
    SET_FOREIGN,    /* foreign_set(1) */
    SNAPSHOT,       /* copy destroyed[] into the script */
    ANSWER,         /* return vie_send_text(401) */
    BREAK,          /* return VIE_DONE without answering */
    PARK,           /* return VIE_PENDING and never resume */
} op;

typedef struct step {
    op op;
    const char *str;
    int arg;
} step;

#define MAX_RC 16

typedef struct script {
    const step *before;
    const step *after;
    int rc[MAX_RC]; /* return codes of the set calls, in order */
    int n_rc;
    char snap[512];
} script;

static const struct user the_user = {7, "ada"}, other_user = {8, "bob"};

/* Returns -1 to go on, else the vie_status to return. */
static int run_steps(vie_ctx *c, script *s, const step *st)
{
    for (; st && st->op != OP_END; st++) {
        int rc = VIE_OK;
        char *copy = NULL;
        switch (st->op) {
        case SET_USER: rc = user_set(c, st->arg ? &other_user : &the_user); break;
        case SET_OTHER_USER: {
            const struct user *u = &other_user;
            rc = vie_ctx_set(c, &other_user_key, &u, sizeof u);
            break;
        }
        case SET_ROLE:
            copy = strdup(st->str);
            rc = role_set(c, copy);
            break;
        case SET_BLOB:
            copy = strdup(st->str);
            rc = blob_set(c, copy);
            break;
        case SET_NOTE:
            copy = strdup(st->str);
            rc = note_set(c, copy);
            break;
        case SET_COUNTER: rc = counter_set(c, (uint64_t)st->arg); break;
        case SET_STRAY: rc = stray_set(c, 1); break;
        case SET_FOREIGN: rc = foreign_set(c, 1); break;
        case SNAPSHOT: snprintf(s->snap, sizeof s->snap, "%s", destroyed); continue;
        case ANSWER: return vie_send_text(c, 401, "no");
        case BREAK: return VIE_DONE;
        case PARK: return VIE_PENDING;
        case OP_END: break;
        }
        if (rc != VIE_OK) free(copy); /* refused: the value is still ours */
        if (s->n_rc < MAX_RC) s->rc[s->n_rc++] = rc;
    }
    return -1;
}

static vie_status script_before(vie_ctx *c, void *state)
{
    script *s = state;
    int st = run_steps(c, s, s->before);
    return st < 0 ? VIE_NEXT : (vie_status)st;
}

static void script_after(vie_ctx *c, void *state)
{
    script *s = state;
    run_steps(c, s, s->after);
}

static vie_middleware script_mw(const char *name, vie_phase phase)
{
    return (vie_middleware){
        .name = name, .phase = phase, .before = script_before, .after = script_after};
}

/* What the handler saw. */
static struct {
    int calls;
    bool has_user;
    const struct user *user;
    const struct user *other_user;
    char role[32];
    char blob[32];
    char note[32];
    uint64_t counter;
    bool has_stray;
    int stray;
    bool has_role, has_blob, has_note, has_counter, has_foreign;
    int foreign;
} seen;

static script handler_script;

static void copy_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

static vie_status reading_handler(vie_ctx *c, void *arg)
{
    seen.calls++;
    seen.has_user = user_has(c);
    seen.user = user_get(c);
    vie_ctx_get(c, &other_user_key, &seen.other_user, sizeof seen.other_user);
    copy_str(seen.role, sizeof seen.role, role_get(c));
    copy_str(seen.blob, sizeof seen.blob, blob_get(c));
    copy_str(seen.note, sizeof seen.note, note_get(c));
    seen.counter = counter_get(c);
    seen.has_stray = stray_has(c);
    seen.stray = stray_get(c);
    seen.has_role = role_has(c);
    seen.has_blob = blob_has(c);
    seen.has_note = note_has(c);
    seen.has_counter = counter_has(c);
    seen.has_foreign = foreign_has(c);
    seen.foreign = foreign_get(c);
    run_steps(c, &handler_script, handler_script.before);
    return vie_send_text(c, 200, "ok");
}

static int reset(void **state)
{
    (void)state;
    vie_log_set_level(VIE_LOG_OFF);
    memset(&seen, 0, sizeof seen);
    memset(&handler_script, 0, sizeof handler_script);
    destroyed[0] = '\0';
    n_destroyed = 0;
    for (size_t i = 0; i < sizeof all_keys / sizeof *all_keys; i++) {
        all_keys[i]->conflicts = 0;
        all_keys[i]->destroy = NULL;
    }
    return 0;
}

static vie_test_response *get(vie_app *app, const char *target)
{
    vie_test_response *r = vie_test_request(app, "GET", target, NULL, NULL, 0);
    assert_non_null(r);
    return r;
}

/* ================================================================== */
/* Typed values                                                        */

static const uint64_t u64_in = 0xfedcba9876543210ull;
static const double ratio_in = -0.1;

typedef struct typed_seen {
    bool empty_before;
    int rc_user, rc_counter, rc_ratio, rc_flag, rc_nine, rc_null;
    bool got_nine;
    const struct user *user;
    uint64_t counter;
    double ratio;
    bool flag, has_ratio;
} typed_seen;

static vie_status typed_writer(vie_ctx *c, void *state)
{
    typed_seen *t = state;
    /* Nothing is set yet: the getters give the zero value. */
    t->empty_before = !user_has(c) && user_get(c) == NULL && counter_get(c) == 0 && !flag_has(c) &&
                      !ratio_has(c) && ratio_get(c) == 0.0;
    t->rc_user = user_set(c, &the_user);
    t->rc_counter = counter_set(c, u64_in);
    t->rc_ratio = ratio_set(c, ratio_in);
    t->rc_flag = flag_set(c, true);
    /* The raw API refuses values and reads of over 8 bytes, and NULL. */
    char nine[9] = {0};
    t->rc_nine = vie_ctx_set(c, &counter_key, nine, sizeof nine);
    t->got_nine = vie_ctx_get(c, &counter_key, nine, sizeof nine);
    t->rc_null = vie_ctx_set(c, &counter_key, NULL, 8);
    return VIE_NEXT;
}

static vie_status typed_reader(vie_ctx *c, void *state)
{
    typed_seen *t = state;
    t->user = user_get(c);
    t->counter = counter_get(c);
    t->ratio = ratio_get(c);
    t->has_ratio = ratio_has(c);
    t->flag = flag_get(c);
    return vie_send_text(c, 200, "ok");
}

static void typed_values_round_trip(void **state)
{
    vie_app *app = vie_app_new(NULL);
    typed_seen t;
    vie_middleware m = {.name = "writer", .phase = VIE_GUARD, .before = typed_writer};
    assert_int_equal(vie_key_register(app, &user_key), VIE_OK);
    assert_int_equal(vie_key_register(app, &user_key), VIE_OK); /* twice is fine */
    assert_int_equal(vie_key_register(app, &counter_key), VIE_OK);
    assert_int_equal(vie_key_register(app, &ratio_key), VIE_OK);
    assert_int_equal(vie_key_register(app, &flag_key), VIE_OK);
    assert_int_equal(vie_use(app, &m, &t), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", typed_reader, &t), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    for (int round = 0; round < 2; round++) {
        /* The second round reuses the context: nothing carries over, and
         * a WRITE_ONCE key may be written once again. */
        memset(&t, 0, sizeof t);
        vie_test_response *r = get(app, "/x");
        assert_int_equal(r->status, 200);
        assert_true(t.empty_before);
        assert_int_equal(t.rc_user, VIE_OK);
        assert_int_equal(t.rc_counter, VIE_OK);
        assert_int_equal(t.rc_ratio, VIE_OK);
        assert_int_equal(t.rc_flag, VIE_OK);
        assert_int_equal(t.rc_nine, VIE_EINVAL);
        assert_false(t.got_nine);
        assert_int_equal(t.rc_null, VIE_EINVAL);
        assert_ptr_equal(t.user, &the_user);
        assert_true(t.counter == u64_in);
        assert_true(t.has_ratio);
        assert_memory_equal(&t.ratio, &ratio_in, sizeof(double));
        assert_true(t.flag);
        vie_test_response_free(r);
    }
    assert_int_equal(user_key.conflicts, 0);
    assert_int_equal(app->stats->key_conflicts, 0);
    vie_app_free(app);
}

static void keys_spelled_alike_do_not_collide(void **state)
{
    vie_app *app = vie_app_new(NULL);
    static const step writes[] = {
        {SET_USER, NULL, 0}, {SET_OTHER_USER, NULL, 0}, {OP_END, NULL, 0}};
    script s = {.before = writes};
    vie_middleware m = script_mw("writer", VIE_GUARD);
    assert_int_equal(vie_key_register(app, &user_key), VIE_OK);
    assert_int_equal(vie_key_register(app, &other_user_key), VIE_OK);
    assert_int_equal(vie_use(app, &m, &s), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", reading_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 200);
    assert_int_equal(s.rc[0], VIE_OK);
    assert_int_equal(s.rc[1], VIE_OK);
    assert_ptr_equal(seen.user, &the_user);
    assert_ptr_equal(seen.other_user, &other_user);
    assert_int_equal(app->stats->key_conflicts, 0);
    vie_test_response_free(r);
    vie_app_free(app);
}

/* ================================================================== */
/* WRITE_ONCE                                                          */

static void write_once_refuses_a_second_write(void **state)
{
    vie_app *app = vie_app_new(NULL);
    static const step first[] = {{SET_USER, NULL, 0}, {OP_END, NULL, 0}};
    static const step second[] = {{SET_USER, NULL, 1}, {OP_END, NULL, 0}};
    script a = {.before = first}, b = {.before = second};
    handler_script.before = second;
    vie_middleware ma = script_mw("first-writer", VIE_OBSERVE),
                   mb = script_mw("second-writer", VIE_GUARD);
    assert_int_equal(vie_key_register(app, &user_key), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", reading_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    capture k;
    capture_begin(&k);
    vie_test_response *r = get(app, "/x");
    char *log = capture_end(&k);

    assert_int_equal(r->status, 200);
    assert_int_equal(a.rc[0], VIE_OK);
    assert_int_equal(b.rc[0], VIE_ECONFLICT);
    assert_int_equal(handler_script.rc[0], VIE_ECONFLICT);
    assert_ptr_equal(seen.user, &the_user); /* the first value is kept */
    assert_int_equal(user_key.conflicts, 2);
    assert_int_equal(app->stats->key_conflicts, 2);
    /* The log names both writers. */
    assert_true(log_has_line(log, "user", "second-writer", "first-writer", NULL));
    assert_true(log_has_line(log, "user", "GET /x", "first-writer", NULL));
    free(log);
    vie_test_response_free(r);
    vie_app_free(app);
}

/* ================================================================== */
/* OWNER                                                               */

static void owner_key_is_written_by_its_owner_only(void **state)
{
    vie_app *app = vie_app_new(NULL);
    static const step try_hacker[] = {{SET_ROLE, "hacker", 0}, {OP_END, NULL, 0}};
    static const step set_admin[] = {{SET_ROLE, "admin", 0}, {OP_END, NULL, 0}};
    static const step try_root[] = {{SET_ROLE, "root", 0}, {OP_END, NULL, 0}};
    static vie_key *const owns_role[] = {&role_key, NULL};
    role_key.destroy = destroy_string;
    /* The snoop runs first: being first does not make it the owner. */
    script snoop = {.before = try_hacker}, auth = {.before = set_admin},
           later = {.before = try_root, .after = try_root};
    handler_script.before = try_root;
    vie_middleware msnoop = script_mw("snoop", VIE_OBSERVE), mauth = script_mw("auth", VIE_GUARD),
                   mlater = script_mw("later", VIE_APP);
    mauth.owns = owns_role; /* registers the key too */
    assert_int_equal(vie_use(app, &msnoop, &snoop), VIE_OK);
    assert_int_equal(vie_use(app, &mauth, &auth), VIE_OK);
    assert_int_equal(vie_use(app, &mlater, &later), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", reading_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    capture k;
    capture_begin(&k);
    vie_test_response *r = get(app, "/x");
    char *log = capture_end(&k);

    assert_int_equal(r->status, 200);
    assert_int_equal(snoop.rc[0], VIE_ECONFLICT);
    assert_int_equal(auth.rc[0], VIE_OK);
    assert_int_equal(later.rc[0], VIE_ECONFLICT);
    assert_int_equal(later.rc[1], VIE_ECONFLICT); /* in its after hook too */
    assert_int_equal(handler_script.rc[0], VIE_ECONFLICT);
    assert_string_equal(seen.role, "admin");
    assert_true(seen.has_role);
    assert_int_equal(role_key.conflicts, 4);
    assert_int_equal(app->stats->key_conflicts, 4);
    assert_true(log_has_line(log, "role", "snoop", "auth", NULL));
    /* The accepted value is destroyed once, at the end. */
    assert_string_equal(destroyed, "admin;");
    assert_int_equal(n_destroyed, 1);
    free(log);
    vie_test_response_free(r);
    vie_app_free(app);
}

/* An owner writing twice: whatever the policy decides, every value that
 * was accepted is destroyed exactly once, none leaks. */
static void owner_rewrite_destroys_each_accepted_value(void **state)
{
    vie_app *app = vie_app_new(NULL);
    static const step set_admin[] = {{SET_ROLE, "admin", 0}, {OP_END, NULL, 0}};
    static const step set_admin2[] = {{SET_ROLE, "admin2", 0}, {OP_END, NULL, 0}};
    static vie_key *const owns_role[] = {&role_key, NULL};
    role_key.destroy = destroy_string;
    script auth = {.before = set_admin, .after = set_admin2};
    vie_middleware mauth = script_mw("auth", VIE_GUARD);
    mauth.owns = owns_role;
    assert_int_equal(vie_use(app, &mauth, &auth), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", reading_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 200);
    assert_int_equal(auth.rc[0], VIE_OK);
    assert_string_equal(seen.role, "admin");
    if (auth.rc[1] == VIE_OK) {
        assert_int_equal(n_destroyed, 2);
        assert_string_equal(destroyed, "admin;admin2;");
    } else {
        assert_int_equal(auth.rc[1], VIE_ECONFLICT);
        assert_int_equal(n_destroyed, 1);
        assert_string_equal(destroyed, "admin;");
    }
    vie_test_response_free(r);
    vie_app_free(app);
}

static void owner_key_without_owner_refuses_to_start(void **state)
{
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_key_register(app, &role_key), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", reading_handler, NULL), VIE_OK);
    char *log;
    assert_int_equal(freeze_logged(app, &log), VIE_ECONFIG);
    assert_true(log_has_line(log, "role", "owner", NULL));
    free(log);
    assert_int_equal(vie_test_begin(app), VIE_ECONFIG);
    vie_app_free(app);
}

static void owner_key_with_two_owners_refuses_to_start(void **state)
{
    vie_app *app = vie_app_new(NULL);
    static vie_key *const owns_role[] = {&role_key, NULL};
    script a = {0}, b = {0};
    vie_middleware ma = script_mw("auth", VIE_GUARD), mb = script_mw("sso", VIE_GUARD);
    ma.owns = owns_role;
    mb.owns = owns_role;
    vie_group *g;
    assert_int_equal(vie_group_new(app, NULL, "/sso", &g), VIE_OK);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_group_use(g, &mb, &b), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", reading_handler, NULL), VIE_OK);
    char *log;
    assert_int_equal(freeze_logged(app, &log), VIE_ECONFIG);
    assert_true(log_has_line(log, "role", "auth", "sso", NULL));
    free(log);
    vie_app_free(app);
}

static void owning_a_key_of_another_policy_refuses_to_start(void **state)
{
    vie_app *app = vie_app_new(NULL);
    static vie_key *const owns_user[] = {&user_key, NULL};
    script a = {0};
    vie_middleware ma = script_mw("auth", VIE_GUARD);
    ma.owns = owns_user; /* user is WRITE_ONCE */
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", reading_handler, NULL), VIE_OK);
    char *log;
    assert_int_equal(freeze_logged(app, &log), VIE_ECONFIG);
    assert_true(log_has_line(log, "auth", "user", NULL));
    free(log);
    vie_app_free(app);
}

/* ================================================================== */
/* OVERWRITE and destructors                                           */

static void overwrite_replaces_and_destroys_the_old_value(void **state)
{
    vie_app *app = vie_app_new(NULL);
    static const step a_before[] = {
        {SET_NOTE, "first", 0}, {SET_COUNTER, NULL, 1}, {OP_END, NULL, 0}};
    static const step a_after[] = {{SET_NOTE, "after", 0}, {SNAPSHOT, NULL, 0}, {OP_END, NULL, 0}};
    static const step b_before[] = {
        {SET_NOTE, "second", 0}, {SNAPSHOT, NULL, 0}, {SET_COUNTER, NULL, 2}, {OP_END, NULL, 0}};
    note_key.destroy = destroy_string;
    script a = {.before = a_before, .after = a_after}, b = {.before = b_before};
    vie_middleware ma = script_mw("a", VIE_OBSERVE), mb = script_mw("b", VIE_GUARD);
    assert_int_equal(vie_key_register(app, &note_key), VIE_OK);
    assert_int_equal(vie_key_register(app, &blob_key), VIE_OK);
    assert_int_equal(vie_key_register(app, &counter_key), VIE_OK);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", reading_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 200);
    for (int i = 0; i < 2; i++)
        assert_int_equal(a.rc[i], VIE_OK);
    for (int i = 0; i < 2; i++)
        assert_int_equal(b.rc[i], VIE_OK);
    assert_int_equal(a.rc[2], VIE_OK);     /* in the after hook */
    assert_string_equal(b.snap, "first;"); /* destroyed when replaced */
    assert_string_equal(a.snap, "first;second;");
    assert_string_equal(seen.note, "second");
    assert_true(seen.has_note);
    assert_true(seen.has_counter);
    assert_int_equal(seen.counter, 2);
    assert_false(seen.has_blob); /* registered, never written */
    /* The last value is destroyed when the request ends: each once. */
    assert_string_equal(destroyed, "first;second;after;");
    assert_int_equal(n_destroyed, 3);
    assert_int_equal(note_key.conflicts, 0);
    assert_int_equal(app->stats->key_conflicts, 0);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void destructor_runs_once_on_every_path(void **state)
{
    vie_app *app = vie_app_new(NULL);
    static const step normal[] = {{SET_BLOB, "normal", 0}, {OP_END, NULL, 0}};
    static const step answers[] = {{SET_BLOB, "answered", 0}, {ANSWER, NULL, 0}, {OP_END, NULL, 0}};
    static const step breaks[] = {{SET_BLOB, "broken", 0}, {BREAK, NULL, 0}, {OP_END, NULL, 0}};
    static const step twice[] = {{SET_BLOB, "one", 0}, {SET_BLOB, "two", 0}, {OP_END, NULL, 0}};
    static const step parks[] = {{SET_BLOB, "parked", 0}, {PARK, NULL, 0}, {OP_END, NULL, 0}};
    blob_key.destroy = destroy_string;
    assert_int_equal(vie_key_register(app, &blob_key), VIE_OK);
    struct {
        const char *prefix, *layer;
        const step *steps;
        int status;
        const char *destroyed;
        script s;
        vie_group *g;
    } cases[] = {
#define CASE(p, l, st, code, d)                                                                    \
    {.prefix = p, .layer = l, .steps = st, .status = code, .destroyed = d}
        CASE("/normal", "l-normal", normal, 200, "normal;"),
        CASE("/answers", "l-answers", answers, 401, "answered;"),
        CASE("/breaks", "l-breaks", breaks, 500, "broken;"),
        CASE("/twice", "l-twice", twice, 200, "one;"),
        CASE("/parks", "l-parks", parks, 504, "parked;"),
#undef CASE
    };
    size_t n = sizeof cases / sizeof *cases;
    for (size_t i = 0; i < n; i++) {
        cases[i].s.before = cases[i].steps;
        vie_middleware m = script_mw(cases[i].layer, VIE_GUARD);
        m.async_timeout_ms = 20;
        assert_int_equal(vie_group_new(app, NULL, cases[i].prefix, &cases[i].g), VIE_OK);
        assert_int_equal(vie_group_use(cases[i].g, &m, &cases[i].s), VIE_OK);
        vie_route_opts o = {.group = cases[i].g};
        assert_int_equal(vie_route_with(app, "GET", "/x", reading_handler, NULL, &o), VIE_OK);
    }
    assert_int_equal(vie_test_begin(app), VIE_OK);
    for (size_t i = 0; i < n; i++) {
        destroyed[0] = '\0';
        n_destroyed = 0;
        char target[32];
        snprintf(target, sizeof target, "%s/x", cases[i].prefix);
        vie_test_response *r = get(app, target);
        assert_int_equal(r->status, cases[i].status);
        assert_int_equal(cases[i].s.rc[0], VIE_OK);
        assert_string_equal(destroyed, cases[i].destroyed);
        assert_int_equal(n_destroyed, 1);
        vie_test_response_free(r);
    }
    assert_int_equal(cases[3].s.rc[1], VIE_ECONFLICT);
    assert_int_equal(blob_key.conflicts, 1);
    /* Nothing is destroyed again later. */
    destroyed[0] = '\0';
    vie_test_run_for(app, 30);
    assert_string_equal(destroyed, "");
    vie_app_free(app);
}

/* ================================================================== */
/* Unregistered keys                                                   */

static void unregistered_key_is_refused(void **state)
{
    vie_app *other = vie_app_new(NULL);
    assert_int_equal(vie_key_register(other, &foreign_key), VIE_OK);

    vie_app *app = vie_app_new(NULL);
    static const step writes[] = {{SET_STRAY, NULL, 0}, {SET_FOREIGN, NULL, 0}, {OP_END, NULL, 0}};
    script s = {.before = writes};
    vie_middleware m = script_mw("writer", VIE_GUARD);
    /* Another key gets a slot in this app, so slots exist for this request. */
    assert_int_equal(vie_key_register(app, &user_key), VIE_OK);
    assert_int_equal(vie_use(app, &m, &s), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", reading_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    static const step handler_writes[] = {
        {SET_USER, NULL, 0}, {SET_STRAY, NULL, 0}, {OP_END, NULL, 0}};
    handler_script.before = handler_writes;

    capture k;
    capture_begin(&k);
    vie_test_response *r = get(app, "/x");
    char *log = capture_end(&k);

    assert_int_equal(r->status, 200);
    assert_int_equal(s.rc[0], VIE_EINVAL);
    assert_int_equal(s.rc[1], VIE_EINVAL);
    assert_int_equal(handler_script.rc[0], VIE_OK);
    assert_int_equal(handler_script.rc[1], VIE_EINVAL);
    assert_false(seen.has_stray);
    assert_int_equal(seen.stray, 0);
    assert_false(seen.has_foreign);
    assert_int_equal(seen.foreign, 0);
    assert_true(log_has_line(log, "stray", "not registered", NULL));
    assert_true(log_has_line(log, "foreign", "not registered", NULL));
    free(log);
    vie_test_response_free(r);
    vie_app_free(app);
    vie_app_free(other);
}

static void key_registration_checks_its_arguments(void **state)
{
    vie_app *app = vie_app_new(NULL);
    vie_key nameless = {NULL, VIE_KEY_WRITE_ONCE, NULL, 0, 0};
    vie_key bad_policy = {"bad", (vie_key_policy)42, NULL, 0, 0};
    assert_int_equal(vie_key_register(app, NULL), VIE_EINVAL);
    assert_int_equal(vie_key_register(NULL, &user_key), VIE_EINVAL);
    assert_int_equal(vie_key_register(app, &nameless), VIE_EINVAL);
    assert_int_equal(vie_key_register(app, &bad_policy), VIE_EINVAL);
    assert_int_equal(vie_key_register(app, &user_key), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    /* Frozen now. */
    assert_int_equal(vie_key_register(app, &note_key), VIE_EFROZEN);
    assert_int_equal(app->stats->frozen_refusals, 1);
    vie_app_free(app);
}

static vie_status writer_before_stub(vie_ctx *c, void *s)
{
    return VIE_NEXT;
}

static int state_frees;
static void count_free(void *state)
{
    (void)state;
    state_frees++;
}

/* A layer whose owned key is refused is not registered at all: the
 * caller keeps its state (no double free later), the app stays as it was. */
static void refused_owned_key_registers_nothing(void **state)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    static vie_key nameless = {NULL, VIE_KEY_OWNER, NULL, 0, 0};
    static vie_key *const owns[] = {&nameless, NULL};
    vie_middleware m = {.name = "owner",
                        .phase = VIE_GUARD,
                        .before = writer_before_stub,
                        .owns = owns,
                        .free_state = count_free};
    state_frees = 0;
    assert_int_equal(vie_use(app, &m, NULL), VIE_EINVAL);
    assert_int_equal(app->n_layers, 0);
    vie_app_free(app);
    assert_int_equal(state_frees, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refused_owned_key_registers_nothing),
#define T(f) cmocka_unit_test_setup(f, reset)
        T(typed_values_round_trip),
        T(keys_spelled_alike_do_not_collide),
        T(write_once_refuses_a_second_write),
        T(owner_key_is_written_by_its_owner_only),
        T(owner_rewrite_destroys_each_accepted_value),
        T(owner_key_without_owner_refuses_to_start),
        T(owner_key_with_two_owners_refuses_to_start),
        T(owning_a_key_of_another_policy_refuses_to_start),
        T(overwrite_replaces_and_destroys_the_old_value),
        T(destructor_runs_once_on_every_path),
        T(unregistered_key_is_refused),
        T(key_registration_checks_its_arguments),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
