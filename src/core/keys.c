/* Typed request values. A key's address is its identity; its slot is a
 * process-wide dense index given at its first registration, so a key
 * shared by two apps keeps one slot and get/set are array accesses. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "core/log.h"
#include "core/metrics.h"

static atomic_uint next_slot; /* slot 0 means "never registered" */

int vie_key_register(vie_app *app, vie_key *key)
{
    if (!app || !key || !key->name) {
        LOG_ERROR("vie_key_register refused: %s is NULL", !app ? "app" : !key ? "key" : "key name");
        return VIE_EINVAL;
    }
    if (app->frozen) return app_refuse_frozen(app, "vie_key_register", key->name);
    if ((unsigned)key->policy > VIE_KEY_OVERWRITE) {
        LOG_ERROR("vie_key_register(%s) refused: invalid policy %d", key->name, (int)key->policy);
        return VIE_EINVAL;
    }
    if (key->slot == 0) key->slot = atomic_fetch_add(&next_slot, 1) + 1;
    if (key->slot > VIE_MAX_KEYS) {
        LOG_ERROR("vie_key_register(%s) refused: a process holds at most %d keys", key->name,
                  VIE_MAX_KEYS);
        return VIE_EINVAL;
    }
    size_t i = key->slot - 1;
    if (i < app->n_keys && app->keys[i] == key) return VIE_OK; /* already here */
    if (i >= app->cap_keys) {
        size_t cap = app->cap_keys ? app->cap_keys : 8;
        while (cap <= i)
            cap *= 2;
        vie_key **v = realloc(app->keys, cap * sizeof *v);
        if (!v) return VIE_ENOMEM;
        memset(v + app->cap_keys, 0, (cap - app->cap_keys) * sizeof *v);
        app->keys = v;
        app->cap_keys = cap;
    }
    app->keys[i] = key;
    if (i >= app->n_keys) app->n_keys = i + 1;
    return VIE_OK;
}

void keys_free(vie_app *app)
{
    free(app->key_owners);
    app->key_owners = NULL;
    free(app->keys);
    app->keys = NULL;
    app->n_keys = app->cap_keys = 0;
}

static bool registered(const vie_app *app, const vie_key *key)
{
    return key && key->slot && key->slot - 1 < app->n_keys && app->keys[key->slot - 1] == key;
}

static int conflict(vie_ctx *c, vie_key *key, const char *why, const char *other)
{
    key->conflicts++;
    c->app->stats->key_conflicts++;
    c->app->key_conflicts[key->slot - 1]++;
    LOG_WARN("key %s: write by %s refused: %s %s (request %.*s %.*s)", key->name, c->actor, why,
             other, (int)c->req.method_len, c->req.method ? c->req.method : "", (int)c->path.len,
             c->path.ptr ? c->path.ptr : "");
    return VIE_ECONFLICT;
}

int vie_ctx_set(vie_ctx *c, vie_key *key, const void *value, size_t size)
{
    if (!c || !value || size > sizeof(uint64_t)) {
        LOG_ERROR("vie_ctx_set refused: %s", !c       ? "NULL ctx"
                                             : !value ? "NULL value"
                                                      : "over 8 bytes");
        return VIE_EINVAL;
    }
    if (!registered(c->app, key)) {
        LOG_ERROR("vie_ctx_set refused: key %s is not registered with this app (vie_key_register "
                  "before the app starts)",
                  key && key->name ? key->name : "(null)");
        return VIE_EINVAL;
    }
    if (!c->slots) {
        c->slots = arena_alloc(&c->arena, c->app->n_keys * sizeof *c->slots);
        if (!c->slots) return VIE_ENOMEM;
        memset(c->slots, 0, c->app->n_keys * sizeof *c->slots);
    }
    key_slot *s = &c->slots[key->slot - 1];
    switch (key->policy) {
    case VIE_KEY_OWNER: {
        const layer *owner = c->app->key_owners ? c->app->key_owners[key->slot - 1] : NULL;
        if (!owner || owner != c->cur)
            return conflict(c, key, "it is owned by", owner ? owner->mw.name : "no layer");
        if (s->set && key->destroy) key->destroy(&s->value); /* the owner may rewrite it */
        break;
    }
    case VIE_KEY_WRITE_ONCE:
        if (s->set) return conflict(c, key, "it was already written by", s->writer);
        break;
    case VIE_KEY_OVERWRITE:
        if (s->set && key->destroy) key->destroy(&s->value);
        break;
    }
    s->value = 0;
    memcpy(&s->value, value, size);
    s->writer = c->actor;
    s->set = true;
    return VIE_OK;
}

bool vie_ctx_get(const vie_ctx *c, const vie_key *key, void *value, size_t size)
{
    if (!c || !c->slots || !registered(c->app, key) || size > sizeof(uint64_t)) return false;
    const key_slot *s = &c->slots[key->slot - 1];
    if (!s->set) return false;
    memcpy(value, &s->value, size);
    return true;
}

bool vie_ctx_has(const vie_ctx *c, const vie_key *key)
{
    return c && c->slots && registered(c->app, key) && c->slots[key->slot - 1].set;
}

/* Called at request end: destroy every value whose key has a destructor. */
void keys_destroy_values(vie_ctx *c)
{
    if (!c->slots) return;
    for (size_t i = 0; i < c->app->n_keys; i++) {
        vie_key *k = c->app->keys[i];
        if (k && k->destroy && c->slots[i].set) k->destroy(&c->slots[i].value);
    }
}
