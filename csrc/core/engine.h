/* Private to the core: what the transfer code (http.c, download.c,
 * client.c) needs from the engine (engine.c) when a session runs inside an
 * engine task. See uni1.h, "The engine", for the public side. */
#ifndef UNI1_ENGINE_H
#define UNI1_ENGINE_H

#include <curl/curl.h>

#include "uni1.h"

typedef struct uni1_engine uni1_engine;

/* One transfer handed to a multi handle: CURLOPT_PRIVATE of its easy handle
 * points here, so whoever reads the multi's messages (the session's own loop
 * or the engine) can say it ended. */
typedef struct uni1_xfer {
    uni1_task *task; /* engine mode: the task to wake; NULL otherwise */
    int done;
    CURLcode result;
} uni1_xfer;

/* The task a session runs in (NULL on a caller's own thread). */
uni1_task *uni1__session_task(const uni1_session *s);
/* Engine mode: adds e to the engine's multi handle / removes it. */
CURLMcode uni1__engine_add(uni1_task *t, CURL *e);
void uni1__engine_remove(uni1_task *t, CURL *e);
/* Engine mode: gives the engine thread back until a transfer of this task
 * ends, the task is cancelled, or (wake_at > 0) uni1_monotonic() reaches
 * wake_at. Spurious returns are allowed: callers loop. */
void uni1__engine_park(uni1_task *t, double wake_at);
/* Lets a cancelled task make one last bounded request (the generation
 * pipeline cancelling its job on the server). */
void uni1__task_clear_cancel(uni1_task *t);
/* From inside a task: the pages of its stack below the frames in use go back
 * to the system (for a task about to park for long). */
void uni1__engine_trim_stack(void);
/* A session of task t is about to make its first easy handle: waits for
 * one of the engine's UNI1_ENGINE_HANDLES slots (not when cancelled: a
 * cancelled task takes one beyond the count and ends soon). The slot is
 * given back by uni1__engine_slot_release, when the session drops its
 * handles or the task ends. */
void uni1__engine_slot_acquire(uni1_task *t);
void uni1__engine_slot_release(uni1_task *t);
/* Whether uni1_task_cancel was called on t. */
int uni1__task_cancelled(const uni1_task *t);

/* Fork handling, called by pool.c's handlers for every registered client
 * (the engine's lock is taken with the client's). */
void uni1__engine_atfork_prepare(uni1_client *c);
void uni1__engine_atfork_parent(uni1_client *c);
void uni1__engine_atfork_child(uni1_client *c);
void uni1__engine_global_atfork(int phase); /* 0 prepare, 1 parent, 2 child */
/* Stops the engine of a client being freed: cancels its tasks, waits for
 * them to unwind and joins the thread. */
void uni1__engine_free(uni1_client *c);

#endif
