/* An intrusive doubly-linked list: O(1) insert and remove, no allocation. */
#ifndef VIE_CORE_LIST_H
#define VIE_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct dlink {
    struct dlink *prev, *next;
} dlink;

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void dlist_init(dlink *head)
{
    head->prev = head->next = head;
}

static inline bool dlist_empty(const dlink *head)
{
    return head->next == head;
}

/* A node not in any list has NULL links. */
static inline bool dlink_linked(const dlink *n)
{
    return n->next != NULL;
}

static inline void dlist_push_back(dlink *head, dlink *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

static inline void dlink_remove(dlink *n)
{
    if (!n->next) return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

#endif
