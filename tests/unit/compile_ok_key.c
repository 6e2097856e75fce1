/* Compile-only check (pair of compile_fail_key.c): a typed key's setter
 * accepts a value of the key's type. This file must compile cleanly with
 * -std=c17 -Wall -Wextra -Werror -fsyntax-only; compile_fail_key.c, the
 * same file but for one argument of the wrong type, must not. */
#include "vie/vie.h"

struct user {
    int id;
};

struct order {
    int id;
};

VIE_KEY(user, const struct user *, VIE_KEY_WRITE_ONCE)

vie_status store_user(vie_ctx *c, void *arg);

vie_status store_user(vie_ctx *c, void *arg)
{
    const struct user *u = arg;
    const struct order *o = arg;
    (void)o;
    if (user_set(c, u) != VIE_OK) return vie_send_text(c, 409, "conflict");
    const struct user *back = user_has(c) ? user_get(c) : NULL;
    return back == u ? VIE_NEXT : VIE_DONE;
}
