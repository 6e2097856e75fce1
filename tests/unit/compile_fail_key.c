/* Compile-only NEGATIVE check (pair of compile_ok_key.c): a typed key's
 * setter must refuse a value of another pointer type. Compiled with
 * -std=c17 -Wall -Wextra -Werror -fsyntax-only this file must FAIL, with
 * an "incompatible pointer type" diagnostic; it differs from
 * compile_ok_key.c only in the argument passed to user_set. */
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
    if (user_set(c, o) != VIE_OK) return vie_send_text(c, 409, "conflict"); /* wrong type */
    const struct user *back = user_has(c) ? user_get(c) : NULL;
    return back == u ? VIE_NEXT : VIE_DONE;
}
