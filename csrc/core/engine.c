/* The engine: one thread per client that runs every task of that client as a
 * fiber and drives all their transfers on one libcurl multi handle.
 *
 * Threads other than the engine's only touch a task through its atomics and
 * the engine's lock: uni1_task_start queues it, uni1_task_cancel flags it and
 * queues a poke, a waiter links itself to the tasks it waits for (each task's
 * end wakes its own waiters only, under one process-wide lock). The
 * engine thread alone resumes fibers, owns the multi handle, the run queue
 * and the timer heap, so none of those need a lock.
 *
 * One turn of the loop: take queued tasks and pokes; resume every runnable
 * fiber until it parks; curl_multi_perform; every finished transfer makes
 * its task runnable; so does every timer that is due; then, when nothing is
 * runnable, curl_multi_poll until the next timer or libcurl's own timeout (a
 * curl_multi_wakeup from another thread cuts it short). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine.h"
#include "engine_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "fiber.h"
#include "platform.h"
#include "session.h"
#include "uni1_internal.h"

/* How often (seconds, at most) the engine gives freed memory back. */
#define UNI1_ENGINE_TRIM_EVERY 5.0

/* Guards every task's done flag transition and its list of waiters: a task's
 * end signals the conditions of the threads waiting for it, and no other
 * (one condition for the whole process woke every waiting thread at every
 * task's end: ten blocking calls in flight, ten wake-ups per job). */
static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
/* How many fork()s this process is away from the first: a task started at
 * another count that had not ended by then belongs to a dead engine. */
static atomic_uint fork_epoch;

/* ---- the run queue ------------------------------------------------------ */

static void make_runnable(uni1_engine *e, uni1_task *t)
{
    if (t->runnable || atomic_load(&t->done))
        return;
    t->runnable = 1;
    t->next_run = NULL;
    if (e->run_tail)
        e->run_tail->next_run = t;
    else
        e->run_head = t;
    e->run_tail = t;
}

/* ---- tasks -------------------------------------------------------------- */

static void task_unref(uni1_task *t)
{
    if (atomic_fetch_sub(&t->refs, 1) == 1)
        free(t);
}

static void fiber_main(void *arg)
{
    uni1_task *t = arg;
    t->fn(t->session, t->userdata);
}

static void signal_completion(uni1_engine *e)
{
    if (!atomic_exchange(&e->signalled, 1))
        uni1__wakeup_signal(e->fds[1]);
}

static void finish(uni1_engine *e, uni1_task *t)
{
    uni1__heap_remove(e, t);
    if (t->fiber)
        uni1__fiber_free(t->fiber);
    t->fiber = NULL;
    if (t->session) {
        if (t->session->holds_slot) {
            /* Its handles go with the session (to the pool, or back to the
             * caller that lent it), no longer this engine's to count. */
            uni1__engine_slot_release(t);
            t->session->holds_slot = 0;
        }
        t->session->task = NULL;
        if (t->own_session)
            uni1_session_release(t->session);
        t->session = NULL;
    }
    if (t->live_prev)
        t->live_prev->live_next = t->live_next;
    else
        e->live = t->live_next;
    if (t->live_next)
        t->live_next->live_prev = t->live_prev;
    e->n_live--;
    pthread_mutex_lock(&done_mu);
    atomic_store(&t->done, 1);
    for (wait_link *l = t->waiters; l; l = l->next)
        pthread_cond_signal(&l->w->cv);
    pthread_mutex_unlock(&done_mu);
    signal_completion(e);
    if (t->done_fn)
        t->done_fn(t, t->done_userdata);
    task_unref(t); /* the engine's reference */
}

/* A task picked up from the queue gets its session and fiber. When either
 * cannot be had it ends at once; its function still runs (with s NULL) so
 * that its owner learns why. */
static void begin(uni1_engine *e, uni1_task *t)
{
    t->heap_at = SIZE_MAX;
    t->live_prev = NULL;
    t->live_next = e->live;
    if (e->live)
        e->live->live_prev = t;
    e->live = t;
    e->n_live++;
    if (!t->session) {
        t->own_session = 1;
        t->session = uni1_session_acquire(e->client);
        if (t->session)
            t->session->deadline = t->deadline;
    }
    t->fiber = t->session ? uni1__fiber_new(fiber_main, t) : NULL;
    if (!t->fiber) {
        if (t->session && t->own_session)
            uni1_session_release(t->session);
        t->session = NULL;
        t->fn(NULL, t->userdata);
        finish(e, t);
        return;
    }
    t->session->task = t;
    make_runnable(e, t);
}

static void run_ready(uni1_engine *e)
{
    uni1_task *t;
    while ((t = e->run_head)) {
        e->run_head = t->next_run;
        if (!e->run_head)
            e->run_tail = NULL;
        t->runnable = 0;
        uni1__heap_remove(e, t);
        if (uni1__fiber_resume(t->fiber))
            finish(e, t);
    }
}

static void take_queued(uni1_engine *e, int *stopping)
{
    pthread_mutex_lock(&e->mu);
    uni1_task *q = e->queued, *p = e->poked;
    e->queued = NULL;
    e->poked = NULL;
    for (uni1_task *x = p; x; x = x->next_poked)
        x->poked = 0;
    *stopping = e->stopping;
    pthread_mutex_unlock(&e->mu);
    /* Oldest first. */
    uni1_task *rev = NULL;
    while (q) {
        uni1_task *n = q->next_queued;
        q->next_queued = rev;
        rev = q;
        q = n;
    }
    for (; rev; rev = rev->next_queued)
        begin(e, rev);
    /* A poked task may have been queued and picked up in this same turn, or
     * have ended before: make_runnable looks at done. */
    while (p) {
        uni1_task *n = p->next_poked;
        if (p->fiber)
            make_runnable(e, p);
        task_unref(p); /* the poke's reference (uni1_task_cancel) */
        p = n;
    }
}

/* One turn of the loop (see the top of this file): 0 once the engine is
 * stopping with no task left, or was freed from one of its own done
 * callbacks (uni1__engine_free). */
static int engine_turn(uni1_engine *e)
{
    int stopping;
    take_queued(e, &stopping);
    if (stopping)
        for (uni1_task *t = e->live; t; t = t->live_next) {
            atomic_store(&t->cancel, 1);
            make_runnable(e, t);
        }
    run_ready(e);
    if (e->gone)
        return 0;
    int running = 0;
    curl_multi_perform(e->multi, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(e->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        uni1_xfer *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x) {
            x->done = 1;
            x->result = msg->data.result;
            if (x->task)
                make_runnable(e, x->task);
        }
    }
    double now = uni1_monotonic();
    while (e->n_heap && e->heap[0]->wake_at <= now) {
        uni1_task *t = e->heap[0];
        uni1__heap_remove(e, t);
        make_runnable(e, t);
    }
    if (e->run_head)
        return 1;
    if (stopping && e->n_live == 0)
        return 0;
#ifdef __GLIBC__
    /* A burst of submissions leaves the engine's malloc arena full of freed
     * transfer buffers that glibc keeps; give them back now and then, when
     * the loop is about to sleep. */
    if (now - e->last_trim > UNI1_ENGINE_TRIM_EVERY) {
        uni1__spare_drop();
        malloc_trim(0);
        e->last_trim = now;
    }
#endif
    long ms = -1;
    curl_multi_timeout(e->multi, &ms);
    if (ms < 0 || ms > 1000)
        ms = 1000;
    if (e->n_heap) {
        double d = (e->heap[0]->wake_at - now) * 1000.0 + 1.0;
        if (d < ms)
            ms = d < 0 ? 0 : (long)d;
    }
    curl_multi_poll(e->multi, NULL, 0, (int)ms, NULL);
    return 1;
}

static void engine_destroy(uni1_engine *e)
{
    if (e->multi)
        curl_multi_cleanup(e->multi);
    uni1__wakeup_close(e->fds);
    pthread_mutex_destroy(&e->mu);
    free(e->heap);
    free(e);
}

static void *engine_main(void *arg)
{
    uni1_engine *e = arg;
    uni1__block_signals(); /* signals are the callers' business */
    while (engine_turn(e))
        ;
    uni1__fiber_trim();
    if (e->gone)
        engine_destroy(e); /* nobody joins this thread */
    return NULL;
}

/* ---- the engine's life -------------------------------------------------- */

static uni1_engine *engine_new(uni1_client *c)
{
    uni1_engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->client = c;
    e->fds[0] = e->fds[1] = -1;
    if (pthread_mutex_init(&e->mu, NULL) != 0) {
        free(e);
        return NULL;
    }
    e->multi = curl_multi_init();
    if (!e->multi || uni1__wakeup_open(e->fds) != 0) {
        if (e->multi)
            curl_multi_cleanup(e->multi);
        pthread_mutex_destroy(&e->mu);
        free(e);
        return NULL;
    }
    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, (long)UNI1_ENGINE_CONNECTIONS);
    /* Thousands of tasks polling at once queue in libcurl for a connection
     * instead of opening thousands of sockets (each with its buffers). */
    curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)UNI1_ENGINE_HOST_CONNECTIONS);
    return e;
}

/* The client's engine, made on first use (under the client's lock). */
static uni1_engine *engine_of(uni1_client *c)
{
    pthread_mutex_lock(&c->lock);
    if (!c->engine)
        c->engine = engine_new(c);
    uni1_engine *e = c->engine;
    pthread_mutex_unlock(&c->lock);
    return e;
}

static uni1_task *start(uni1_client *c, uni1_session *lent, uni1_task_fn fn, void *userdata,
                        double deadline, uni1_task_done_fn done, void *done_userdata)
{
    uni1_engine *e = engine_of(c);
    if (!e)
        return NULL;
    uni1_task *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->client = c;
    t->eng = e;
    t->fn = fn;
    t->userdata = userdata;
    t->done_fn = done;
    t->done_userdata = done_userdata;
    t->deadline = deadline;
    t->epoch = atomic_load(&fork_epoch);
    t->session = lent;
    t->heap_at = SIZE_MAX;
    atomic_init(&t->refs, 2); /* the caller's and the engine's */
    pthread_mutex_lock(&e->mu);
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        free(t);
        return NULL;
    }
    if (!e->started) {
        if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
            pthread_mutex_unlock(&e->mu);
            free(t);
            return NULL;
        }
        e->started = 1;
    }
    t->next_queued = e->queued;
    e->queued = t;
    pthread_mutex_unlock(&e->mu);
    curl_multi_wakeup(e->multi);
    return t;
}

uni1_task *uni1_task_start(uni1_client *c, uni1_task_fn fn, void *userdata, double deadline,
                           uni1_task_done_fn done, void *done_userdata)
{
    return start(c, NULL, fn, userdata, deadline, done, done_userdata);
}

uni1_task *uni1_task_start_on(uni1_session *s, uni1_task_fn fn, void *userdata,
                              uni1_task_done_fn done, void *done_userdata)
{
    return start(s->client, s, fn, userdata, s->deadline, done, done_userdata);
}

int uni1_task_done(const uni1_task *t)
{
    return atomic_load(&t->done) || uni1_task_forked(t);
}

void uni1_task_cancel(uni1_task *t)
{
    if (uni1_task_done(t) || atomic_exchange(&t->cancel, 1))
        return;
    uni1_engine *e = t->eng;
    pthread_mutex_lock(&e->mu);
    if (!t->poked) {
        t->poked = 1;
        atomic_fetch_add(&t->refs, 1); /* until the engine took the poke */
        t->next_poked = e->poked;
        e->poked = t;
    }
    pthread_mutex_unlock(&e->mu);
    curl_multi_wakeup(e->multi);
}

void uni1_task_release(uni1_task *t)
{
    if (t)
        task_unref(t);
}

static int first_done(uni1_task *const *tasks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (uni1_task_done(tasks[i]))
            return (int)i;
    return -1;
}

int uni1_tasks_wait(uni1_task *const *tasks, size_t n, double seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    if (seconds < 0)
        seconds = 0;
    if (seconds > 86400.0)
        seconds = 86400.0;
    long long ns = (long long)until.tv_nsec + (long long)(seconds * 1e9);
    until.tv_sec += (time_t)(ns / 1000000000LL);
    until.tv_nsec = (long)(ns % 1000000000LL);
    pthread_mutex_lock(&done_mu);
    int found = first_done(tasks, n);
    if (found >= 0 || seconds == 0) {
        pthread_mutex_unlock(&done_mu);
        return found;
    }
    waiter w;
    uni1__cond_init_monotonic(&w.cv);
    wait_link few[8];
    /* Out of memory for the links: no task can wake us, so sleep in short
     * slices and look again (slower to notice, never stuck). */
    wait_link *links = n <= 8 ? few : malloc(n * sizeof *links);
    if (links)
        for (size_t i = 0; i < n; i++) {
            uni1_task *t = tasks[i];
            links[i].w = &w;
            links[i].prev = NULL;
            links[i].next = t->waiters;
            if (t->waiters)
                t->waiters->prev = &links[i];
            t->waiters = &links[i];
        }
    for (;;) {
        struct timespec at = until;
        if (!links) {
            clock_gettime(CLOCK_MONOTONIC, &at);
            at.tv_nsec += 10000000L;
            if (at.tv_nsec >= 1000000000L) {
                at.tv_sec++;
                at.tv_nsec -= 1000000000L;
            }
            if (at.tv_sec > until.tv_sec ||
                (at.tv_sec == until.tv_sec && at.tv_nsec > until.tv_nsec))
                at = until;
        }
        int r = uni1__cond_wait_until(&w.cv, &done_mu, &at);
        if ((found = first_done(tasks, n)) >= 0)
            break;
        if (r == ETIMEDOUT && (links || (at.tv_sec == until.tv_sec && at.tv_nsec == until.tv_nsec)))
            break;
    }
    if (links) {
        for (size_t i = 0; i < n; i++) {
            wait_link *l = &links[i];
            if (l->prev)
                l->prev->next = l->next;
            else
                tasks[i]->waiters = l->next;
            if (l->next)
                l->next->prev = l->prev;
        }
        if (links != few)
            free(links);
    }
    pthread_mutex_unlock(&done_mu);
    pthread_cond_destroy(&w.cv);
    return found;
}

int uni1_engine_fd(uni1_client *c)
{
    uni1_engine *e = engine_of(c);
    return e ? e->fds[0] : -1;
}

void uni1_engine_drain(uni1_client *c)
{
    uni1_engine *e = engine_of(c);
    if (!e)
        return;
    /* Empty the pipe before clearing the flag: cleared first, a completion
     * in between would write a byte that the read then swallows, leaving the
     * flag set and the fd quiet for every later completion. */
    uni1__wakeup_drain(e->fds[0]);
    atomic_store(&e->signalled, 0);
}

/* ---- what the transfer code asks of the engine -------------------------- */

uni1_task *uni1__session_task(const uni1_session *s)
{
    return s->task;
}

CURLMcode uni1__engine_add(uni1_task *t, CURL *e)
{
    return curl_multi_add_handle(t->eng->multi, e);
}

void uni1__engine_remove(uni1_task *t, CURL *e)
{
    curl_multi_remove_handle(t->eng->multi, e);
}

void uni1__engine_park(uni1_task *t, double wake_at)
{
    if (atomic_load(&t->cancel))
        return;
    t->wake_at = wake_at;
    if (wake_at > 0 && uni1__heap_push(t->eng, t) != 0)
        return; /* no memory for a timer: come back at once, the caller loops */
    uni1__fiber_yield();
}

static void slot_unqueue(uni1_engine *e, uni1_task *t)
{
    uni1_task **p = &e->slot_head, *prev = NULL;
    while (*p && *p != t) {
        prev = *p;
        p = &(*p)->next_slot;
    }
    if (!*p)
        return;
    *p = t->next_slot;
    if (e->slot_tail == t)
        e->slot_tail = prev;
    t->slot_waiting = 0;
}

void uni1__engine_slot_acquire(uni1_task *t)
{
    uni1_engine *e = t->eng;
    while (e->slots_held >= UNI1_ENGINE_HANDLES && !atomic_load(&t->cancel)) {
        if (!t->slot_waiting) {
            t->slot_waiting = 1;
            t->next_slot = NULL;
            if (e->slot_tail)
                e->slot_tail->next_slot = t;
            else
                e->slot_head = t;
            e->slot_tail = t;
        }
        uni1__fiber_release_unused();
        uni1__engine_park(t, 0);
    }
    if (t->slot_waiting) /* cancelled while queued */
        slot_unqueue(e, t);
    e->slots_held++;
}

void uni1__engine_slot_release(uni1_task *t)
{
    uni1_engine *e = t->eng;
    if (e->slots_held)
        e->slots_held--;
    uni1_task *next = e->slot_head;
    if (next) {
        e->slot_head = next->next_slot;
        if (!e->slot_head)
            e->slot_tail = NULL;
        next->slot_waiting = 0;
        make_runnable(e, next);
    }
}

void uni1__engine_trim_stack(void)
{
    uni1__fiber_release_unused();
}

void uni1__task_clear_cancel(uni1_task *t)
{
    atomic_store(&t->cancel, 0);
}

int uni1__task_cancelled(const uni1_task *t)
{
    return atomic_load(&t->cancel);
}

/* ---- closing and forking ------------------------------------------------ */

void uni1__engine_free(uni1_client *c)
{
    uni1_engine *e = c->engine;
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    int started = e->started;
    pthread_mutex_unlock(&e->mu);
    c->engine = NULL;
    if (started && pthread_equal(pthread_self(), e->thread) && !uni1__fiber_current()) {
        /* A done callback of this engine dropped the last reference to its
         * client (Python: a Generation nobody holds frees its Client when it
         * ends). The thread cannot join itself: it winds its tasks down from
         * here, while the client still exists (their sessions go back to its
         * pool; its sockets close through the multi handle), and frees the
         * rest of the engine as it leaves. */
        while (engine_turn(e))
            ;
        curl_multi_cleanup(e->multi);
        e->multi = NULL;
        e->gone = 1;
        pthread_detach(e->thread);
        return;
    }
    if (started) {
        curl_multi_wakeup(e->multi);
        pthread_join(e->thread, NULL);
    }
    engine_destroy(e);
}

void uni1__engine_atfork_prepare(uni1_client *c)
{
    if (c->engine)
        pthread_mutex_lock(&c->engine->mu);
}

void uni1__engine_atfork_parent(uni1_client *c)
{
    if (c->engine)
        pthread_mutex_unlock(&c->engine->mu);
}

/* In the child the engine thread does not exist: its fibers are frozen
 * mid-way and can never run again. Its unfinished tasks count as done there
 * (uni1_task_forked, by fork_epoch: also those the engine was picking up,
 * in no list at the fork; their owners see UNI1_ERR_CONFIG, "started before
 * fork()") and are leaked with their sessions, multi handle and stacks; the
 * next task starts a new engine. No libcurl call here (not
 * async-signal-safe; the sockets are already /dev/null, see pool.c). */
void uni1__engine_atfork_child(uni1_client *c)
{
    uni1_engine *e = c->engine;
    if (!e)
        return;
    pthread_mutex_unlock(&e->mu);
    c->engine = NULL;
}

void uni1__engine_global_atfork(int phase)
{
    uni1__spare_atfork(phase);
    if (phase == 0) {
        pthread_mutex_lock(&done_mu);
    } else if (phase == 1) {
        pthread_mutex_unlock(&done_mu);
    } else {
        /* The parent's waiters are not in the child; the tasks they were
         * linked to are forked there (done, never finished), so no stale
         * link is ever signalled. */
        pthread_mutex_init(&done_mu, NULL);
        atomic_fetch_add(&fork_epoch, 1);
    }
}

int uni1_task_forked(const uni1_task *t)
{
    return t->epoch != atomic_load(&fork_epoch) && !atomic_load(&t->done);
}
