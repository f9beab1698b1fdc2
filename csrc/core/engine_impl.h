/* The engine's own types, shared by engine.c (the loop, tasks, waiting,
 * forking) and engine_timers.c (the timer heap). Nothing else includes this:
 * the rest of the core sees the engine through engine.h. */
#ifndef UNI1_ENGINE_IMPL_H
#define UNI1_ENGINE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "engine.h"
#include "fiber.h"

/* A thread in uni1_tasks_wait: its condition, and one link per task it
 * waits for (on its stack), in that task's list of waiters. */
typedef struct waiter {
    pthread_cond_t cv;
} waiter;
typedef struct wait_link {
    waiter *w;
    struct wait_link *prev, *next;
} wait_link;

struct uni1_task {
    uni1_client *client;
    uni1_engine *eng;
    uni1_task_fn fn;
    void *userdata;
    uni1_task_done_fn done_fn;
    void *done_userdata;
    double deadline;
    unsigned epoch;  /* fork_epoch when started */
    int own_session; /* the session was acquired for the task (else lent) */
    atomic_int cancel;
    atomic_int done;
    atomic_int refs;
    /* Engine thread only. */
    uni1_fiber *fiber;
    uni1_session *session;
    int runnable;
    double wake_at;
    size_t heap_at; /* index in the timer heap, or SIZE_MAX */
    uni1_task *next_run;
    uni1_task *live_prev, *live_next;
    /* Under the engine's lock. A task can be queued and poked at once (a
     * cancel before the engine took it up), hence two links. */
    int poked;
    uni1_task *next_queued, *next_poked;
    /* Under done_mu. */
    wait_link *waiters;
    /* Engine thread: in the queue for a handle slot. */
    int slot_waiting;
    uni1_task *next_slot;
};

struct uni1_engine {
    uni1_client *client;
    pthread_mutex_t mu;
    pthread_t thread;
    int started;
    int stopping;
    uni1_task *queued; /* started, not yet picked up (LIFO) */
    uni1_task *poked;  /* cancelled, to wake (LIFO) */
    CURLM *multi;
    /* Completion signal for event loops: a pipe whose read end is readable
     * once a task ended since the last drain. */
    int fds[2];
    atomic_int signalled;
    /* Engine thread only. */
    uni1_task *run_head, *run_tail;
    uni1_task **heap;
    size_t n_heap, cap_heap;
    uni1_task *live;
    size_t n_live;
    /* Handle slots (UNI1_ENGINE_HANDLES): how many are held, and the
     * tasks waiting for one, oldest first. */
    size_t slots_held;
    uni1_task *slot_head, *slot_tail;
    int gone;         /* freed by a done callback on this thread: it frees itself */
    double last_trim; /* engine thread: the last malloc_trim */
};

/* The timer heap (engine_timers.c), engine thread only: tasks parked until
 * their wake_at, earliest first at heap[0]. A task not in the heap has
 * heap_at SIZE_MAX. */
int uni1__heap_push(uni1_engine *e, uni1_task *t);
void uni1__heap_remove(uni1_engine *e, uni1_task *t);

#endif
