/* The engine's timers: a binary min-heap of parked tasks on wake_at, owned
 * by the engine thread (no lock). */
#include <stdint.h>
#include <stdlib.h>

#include "engine_impl.h"

/* ---- timers (a binary min-heap on wake_at) ------------------------------ */

static void heap_swap(uni1_engine *e, size_t i, size_t j)
{
    uni1_task *t = e->heap[i];
    e->heap[i] = e->heap[j];
    e->heap[j] = t;
    e->heap[i]->heap_at = i;
    e->heap[j]->heap_at = j;
}

static void heap_up(uni1_engine *e, size_t i)
{
    while (i > 0 && e->heap[(i - 1) / 2]->wake_at > e->heap[i]->wake_at) {
        heap_swap(e, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(uni1_engine *e, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < e->n_heap && e->heap[l]->wake_at < e->heap[m]->wake_at)
            m = l;
        if (r < e->n_heap && e->heap[r]->wake_at < e->heap[m]->wake_at)
            m = r;
        if (m == i)
            return;
        heap_swap(e, i, m);
        i = m;
    }
}

int uni1__heap_push(uni1_engine *e, uni1_task *t)
{
    if (e->n_heap == e->cap_heap) {
        size_t cap = e->cap_heap ? 2 * e->cap_heap : 64;
        uni1_task **h = realloc(e->heap, cap * sizeof *h);
        if (!h)
            return -1;
        e->heap = h;
        e->cap_heap = cap;
    }
    t->heap_at = e->n_heap;
    e->heap[e->n_heap++] = t;
    heap_up(e, t->heap_at);
    return 0;
}

void uni1__heap_remove(uni1_engine *e, uni1_task *t)
{
    size_t i = t->heap_at;
    if (i == SIZE_MAX)
        return;
    t->heap_at = SIZE_MAX;
    e->n_heap--;
    if (i == e->n_heap)
        return;
    e->heap[i] = e->heap[e->n_heap];
    e->heap[i]->heap_at = i;
    heap_down(e, i);
    heap_up(e, i);
}
