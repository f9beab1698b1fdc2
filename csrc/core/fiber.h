/* Private to the core: stackful coroutines for the engine (engine.c).
 *
 * A fiber runs a function on a stack of its own and can give control back to
 * the thread that resumed it (uni1__fiber_yield) from any depth of calls, to
 * be resumed later exactly there. The engine runs every task in a fiber, so
 * the protocol code (generate.c, upload.c, ops.c, download.c) stays written
 * as plain sequential C: where it used to wait for a transfer or a timer, the
 * transfer loop yields and the engine drives every task's transfers on one
 * libcurl multi handle. Fibers never move between threads. */
#ifndef UNI1_FIBER_H
#define UNI1_FIBER_H

#include <stddef.h>

typedef struct uni1_fiber uni1_fiber;

/* The stack each fiber gets (reserved address space; only the pages a fiber
 * touches cost memory). cJSON's parser recurses up to its nesting limit. */
#define UNI1_FIBER_STACK ((size_t)256 << 10)

/* A fiber that will run fn(arg) at its first resume; NULL when out of
 * memory. */
uni1_fiber *uni1__fiber_new(void (*fn)(void *), void *arg);
/* Runs f until it yields or returns. 1 once fn has returned (f can then only
 * be freed), else 0. Called from the thread's own stack, never from a fiber. */
int uni1__fiber_resume(uni1_fiber *f);
/* From inside a fiber: back to whoever resumed it. */
void uni1__fiber_yield(void);
/* The fiber running on this thread, or NULL on the thread's own stack. */
uni1_fiber *uni1__fiber_current(void);
/* Frees a fiber that has returned, or one never resumed. A fiber suspended
 * mid-way must not be freed (its stack holds live frames); see engine.c for
 * what happens to those after a fork. */
void uni1__fiber_free(uni1_fiber *f);
/* From inside a fiber: the pages of its stack below the current frame (and a
 * margin for the frames still to come before it parks) are given back; they
 * read as zeros if touched again. */
void uni1__fiber_release_unused(void);
/* Stacks kept for reuse are given back to the system. */
void uni1__fiber_trim(void);

#endif
