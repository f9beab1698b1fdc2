/* Tests of the engine (engine.c, fiber.c): tasks as fibers on one thread
 * per client, timers, cancellation, uni1_tasks_wait, the completion fd,
 * deadlines, closing a client with tasks running, and fork(). The tasks only
 * sleep (uni1__sleep parks them on the engine's timers); generations, which
 * also talk to a server, are in test_generation.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine_test.h"
#include "session.h"
#include "uni1.h"

static uni1_client *make_client(void)
{
    uni1_client *c = new_client(NULL, NULL);
    assert_non_null(c);
    return c;
}

/* ---- tasks ----------------------------------------------------------------- */

/* What a task saw; owned by the test, outlives the task. */
typedef struct probe {
    double sleep_for;
    atomic_int started, ended, done_calls;
    double slept_at, woke_at; /* uni1_monotonic() around the sleep */
    uni1_status status;
    int had_session;
    pthread_t thread;
    double deadline_seen;
} probe;

static void sleeper(uni1_session *s, void *ud)
{
    probe *p = ud;
    p->thread = pthread_self();
    p->had_session = s != NULL;
    atomic_store(&p->started, 1);
    if (!s)
        return;
    p->deadline_seen = s->deadline;
    p->slept_at = uni1_monotonic();
    p->status = uni1__sleep(s, p->sleep_for);
    p->woke_at = uni1_monotonic();
    atomic_store(&p->ended, 1);
}

static void on_done(uni1_task *t, void *ud)
{
    probe *p = ud;
    assert_true(uni1_task_done(t));
    atomic_fetch_add(&p->done_calls, 1);
}

static uni1_task *start_sleeper(uni1_client *c, probe *p, double seconds, double deadline)
{
    p->sleep_for = seconds;
    p->status = (uni1_status)-1;
    uni1_task *t = uni1_task_start(c, sleeper, p, deadline, on_done, p);
    assert_non_null(t);
    return t;
}

static void wait_started(probe *p)
{
    double until = uni1_monotonic() + 5 * slack();
    while (!atomic_load(&p->started) && uni1_monotonic() < until)
        usleep(1000);
    assert_true(atomic_load(&p->started));
}

static void test_task_runs_and_completes(void **state)
{
    (void)state;
    uni1_client *c = make_client();
    probe p = {0};
    uni1_task *t = start_sleeper(c, &p, 0.01, 0);
    assert_int_equal(uni1_tasks_wait(&t, 1, 5 * slack()), 0);
    assert_true(uni1_task_done(t));
    assert_false(uni1_task_forked(t));
    assert_true(p.had_session);
    assert_int_equal(p.status, UNI1_OK);
    assert_true(atomic_load(&p.ended));
    /* on the engine thread, not the caller's */
    assert_false(pthread_equal(p.thread, pthread_self()));
    uni1_task_release(t);
    uni1_client_free(c); /* joins the engine: the done callback has run */
    assert_int_equal(atomic_load(&p.done_calls), 1);
}

/* 2,000 tasks sleeping 1 s each on one engine: timers, not threads, so
 * they all sleep at once, the whole takes about one sleep (not the 2,000 s
 * of their sum) and the process gains one thread. */
static void test_many_sleeping_tasks_share_one_thread(void **state)
{
    (void)state;
    enum { N = 2000 };
    const double nap = 1.0 * slack(); /* longer than it takes to start them all */
    uni1_client *c = make_client();
    probe *ps = calloc(N, sizeof *ps);
    uni1_task **ts = calloc(N, sizeof *ts);
    assert_non_null(ps);
    assert_non_null(ts);
    int threads_before = thread_count();
    double t0 = uni1_monotonic();
    for (int i = 0; i < N; i++)
        ts[i] = start_sleeper(c, &ps[i], nap, 0);
    double started_in = uni1_monotonic() - t0;
    int threads_during = thread_count();
    for (int i = 0; i < N; i++)
        assert_int_equal(uni1_tasks_wait(&ts[i], 1, 30 * slack()), 0);
    double wall = uni1_monotonic() - t0;
    double last_asleep = 0, first_awake = 1e300;
    for (int i = 0; i < N; i++) {
        assert_int_equal(ps[i].status, UNI1_OK);
        assert_true(pthread_equal(ps[i].thread, ps[0].thread));
        assert_true(ps[i].woke_at - ps[i].slept_at >= nap);
        if (ps[i].slept_at > last_asleep)
            last_asleep = ps[i].slept_at;
        if (ps[i].woke_at < first_awake)
            first_awake = ps[i].woke_at;
        uni1_task_release(ts[i]);
    }
    /* the last went to sleep before the first woke: all asleep together */
    assert_true(last_asleep < first_awake);
    assert_int_equal(threads_during, threads_before + 1);
    /* uni1_task_start does no work on the caller's thread */
    assert_true(started_in < 0.5 * slack());
    assert_true(wall >= nap);
    if (wall > nap + 2.0 * slack())
        fail_msg("%d sleeps of %.1f s took %.2f s", N, nap, wall);
    uni1_client_free(c);
    for (int i = 0; i < N; i++)
        assert_int_equal(atomic_load(&ps[i].done_calls), 1);
    free(ps);
    free(ts);
}

static void test_cancel_wakes_a_sleeping_task(void **state)
{
    (void)state;
    uni1_client *c = make_client();
    probe p = {0}, other = {0};
    uni1_task *t = start_sleeper(c, &p, 60, 0);
    uni1_task *o = start_sleeper(c, &other, 60, 0);
    wait_started(&p);
    usleep(20000); /* parked on its timer */
    assert_false(uni1_task_done(t));
    double t0 = uni1_monotonic();
    uni1_task_cancel(t);
    assert_int_equal(uni1_tasks_wait(&t, 1, 5), 0);
    double took = uni1_monotonic() - t0;
    if (took > 0.2 * slack())
        fail_msg("cancel took %.3f s", took);
    assert_int_equal(p.status, UNI1_ERR_INTERRUPTED);
    /* the other task sleeps on */
    assert_false(uni1_task_done(o));
    uni1_task_cancel(t); /* a second cancel, of a done task, is harmless */
    /* cancelled before it ever ran: it starts, sees the cancel, ends */
    probe q = {0};
    uni1_task *u = start_sleeper(c, &q, 60, 0);
    uni1_task_cancel(u);
    assert_int_equal(uni1_tasks_wait(&u, 1, 5), 0);
    assert_int_equal(q.status, UNI1_ERR_INTERRUPTED);
    uni1_task_cancel(o);
    assert_int_equal(uni1_tasks_wait(&o, 1, 5), 0);
    uni1_task_release(t);
    uni1_task_release(u);
    uni1_task_release(o);
    uni1_client_free(c);
}

/* A task that holds the engine thread until told to let go, so that the
 * tasks started meanwhile are all still queued when the test acts on them. */
static void hog(uni1_session *s, void *ud)
{
    (void)s;
    atomic_int *go = ud;
    atomic_store(go, 1);
    while (atomic_load(go) != 2)
        usleep(1000);
}

static void test_cancel_of_a_queued_task_keeps_the_others(void **state)
{
    (void)state;
    uni1_client *c = make_client();
    atomic_int go = 0;
    uni1_task *h = uni1_task_start(c, hog, &go, 0, NULL, NULL);
    assert_non_null(h);
    while (atomic_load(&go) != 1)
        usleep(1000);
    enum { N = 5 };
    probe ps[N];
    uni1_task *ts[N];
    memset(ps, 0, sizeof ps);
    for (int i = 0; i < N; i++)
        ts[i] = start_sleeper(c, &ps[i], 0.01, 0);
    /* the newest and one in the middle of the queue */
    uni1_task_cancel(ts[N - 1]);
    uni1_task_cancel(ts[2]);
    atomic_store(&go, 2);
    for (int i = 0; i < N; i++) {
        if (uni1_tasks_wait(&ts[i], 1, 5 * slack()) != 0)
            fail_msg("task %d never ran", i);
        int cancelled = i == N - 1 || i == 2;
        assert_int_equal(ps[i].status, cancelled ? UNI1_ERR_INTERRUPTED : UNI1_OK);
    }
    assert_int_equal(uni1_tasks_wait(&h, 1, 5), 0);
    uni1_task_release(h);
    for (int i = 0; i < N; i++)
        uni1_task_release(ts[i]);
    uni1_client_free(c);
    for (int i = 0; i < N; i++)
        assert_int_equal(atomic_load(&ps[i].done_calls), 1);
}

static void test_tasks_wait_first_done_and_timeout(void **state)
{
    (void)state;
    uni1_client *a = make_client(), *b = make_client();
    probe p[3];
    memset(p, 0, sizeof p);
    uni1_task *ts[3];
    ts[0] = start_sleeper(a, &p[0], 60, 0);
    ts[1] = start_sleeper(b, &p[1], 60, 0); /* tasks of two clients in one wait */
    ts[2] = start_sleeper(a, &p[2], 60, 0);
    double t0 = uni1_monotonic();
    assert_int_equal(uni1_tasks_wait(ts, 3, 0.2), -1);
    double took = uni1_monotonic() - t0;
    assert_true(took >= 0.19);
    assert_true(took < 0.2 + 0.3 * slack());
    assert_int_equal(uni1_tasks_wait(ts, 3, 0), -1);
    uni1_task_cancel(ts[1]);
    assert_int_equal(uni1_tasks_wait(ts, 3, 5), 1);
    /* the first done in the order given */
    uni1_task_cancel(ts[2]);
    assert_int_equal(uni1_tasks_wait(&ts[2], 1, 5), 0);
    assert_int_equal(uni1_tasks_wait(ts, 3, 5), 1);
    assert_int_equal(uni1_tasks_wait(&ts[2], 1, 0), 0);
    uni1_task_cancel(ts[0]);
    assert_int_equal(uni1_tasks_wait(ts, 1, 5), 0);
    for (int i = 0; i < 3; i++)
        uni1_task_release(ts[i]);
    uni1_client_free(a);
    uni1_client_free(b);
}

/* Each task's end wakes the threads linked to it: several waiters on one
 * task all return, a wait on more tasks than fit on the waiter's stack
 * (links on the heap) finds the one that ended, and a waiter that timed out
 * is unlinked (the task's later end must not touch its gone stack: valgrind
 * and ASan would say). */
typedef struct waiter_arg {
    uni1_task **tasks;
    size_t n;
    double seconds;
    int got;
} waiter_arg;

static void *waiter_thread(void *ud)
{
    waiter_arg *w = ud;
    w->got = uni1_tasks_wait(w->tasks, w->n, w->seconds);
    return NULL;
}

static void test_tasks_wait_wakes_the_waiters_of_the_task_that_ended(void **state)
{
    (void)state;
    uni1_client *c = make_client();
    enum { N = 20 };
    probe p[N];
    memset(p, 0, sizeof p);
    uni1_task *ts[N];
    for (int i = 0; i < N; i++)
        ts[i] = start_sleeper(c, &p[i], 60, 0);
    /* A short wait that times out, linked to every task, then gone. */
    assert_int_equal(uni1_tasks_wait(ts, N, 0.05), -1);
    waiter_arg all = {ts, N, 30 * slack(), -2};
    waiter_arg one_a = {&ts[5], 1, 30 * slack(), -2}, one_b = {&ts[5], 1, 30 * slack(), -2};
    pthread_t th[3];
    pthread_create(&th[0], NULL, waiter_thread, &all);
    pthread_create(&th[1], NULL, waiter_thread, &one_a);
    pthread_create(&th[2], NULL, waiter_thread, &one_b);
    usleep(100000);
    uni1_task_cancel(ts[17]);
    pthread_join(th[0], NULL);
    assert_int_equal(all.got, 17);
    uni1_task_cancel(ts[5]);
    pthread_join(th[1], NULL);
    pthread_join(th[2], NULL);
    assert_int_equal(one_a.got, 0);
    assert_int_equal(one_b.got, 0);
    for (int i = 0; i < N; i++) {
        uni1_task_cancel(ts[i]);
        uni1_task_release(ts[i]);
    }
    uni1_client_free(c);
}

static int readable(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static void test_engine_fd_signals_completions(void **state)
{
    (void)state;
    uni1_client *c = make_client();
    int fd = uni1_engine_fd(c);
    assert_true(fd >= 0);
    assert_int_equal(uni1_engine_fd(c), fd);
    assert_false(readable(fd, 0));
    probe p = {0};
    uni1_task *t = start_sleeper(c, &p, 0.1, 0);
    assert_false(readable(fd, 0));
    assert_true(readable(fd, (int)(5000 * slack())));
    assert_true(uni1_task_done(t));
    uni1_engine_drain(c);
    assert_false(readable(fd, 0));
    /* another completion signals again */
    probe q = {0};
    uni1_task *u = start_sleeper(c, &q, 0.01, 0);
    assert_true(readable(fd, (int)(5000 * slack())));
    assert_int_equal(uni1_tasks_wait(&u, 1, 0), 0);
    uni1_engine_drain(c);
    assert_false(readable(fd, 0));
    uni1_task_release(t);
    uni1_task_release(u);
    uni1_client_free(c);
}

/* An event loop's use: poll, drain, count what is done; never stuck on a
 * completion that came while it drained. */
static void test_engine_fd_never_loses_a_completion(void **state)
{
    (void)state;
    enum { N = 400 };
    uni1_client *c = make_client();
    int fd = uni1_engine_fd(c);
    probe *ps = calloc(N, sizeof *ps);
    uni1_task **ts = calloc(N, sizeof *ts);
    assert_non_null(ps);
    assert_non_null(ts);
    for (int i = 0; i < N; i++)
        ts[i] = start_sleeper(c, &ps[i], 0.002 * (i % 100), 0);
    int seen = 0;
    char *counted = calloc(N, 1);
    assert_non_null(counted);
    while (seen < N) {
        if (!readable(fd, (int)(5000 * slack())))
            fail_msg("the fd stayed quiet with %d of %d tasks done", seen, N);
        uni1_engine_drain(c);
        for (int i = 0; i < N; i++)
            if (!counted[i] && uni1_task_done(ts[i])) {
                counted[i] = 1;
                seen++;
            }
    }
    for (int i = 0; i < N; i++)
        uni1_task_release(ts[i]);
    uni1_client_free(c);
    free(counted);
    free(ps);
    free(ts);
}

static void test_client_free_cancels_and_joins_running_tasks(void **state)
{
    (void)state;
    enum { N = 50 };
    uni1_client *c = make_client();
    probe ps[N];
    uni1_task *ts[N];
    memset(ps, 0, sizeof ps);
    int threads_before = thread_count();
    for (int i = 0; i < N; i++)
        ts[i] = start_sleeper(c, &ps[i], 60, 0);
    for (int i = 0; i < N; i++)
        wait_started(&ps[i]);
    /* some the caller keeps, some it gave back already */
    for (int i = 0; i < N; i += 2)
        uni1_task_release(ts[i]);
    double t0 = uni1_monotonic();
    uni1_client_free(c);
    double took = uni1_monotonic() - t0;
    if (took > 0.5 * slack())
        fail_msg("uni1_client_free took %.2f s", took);
    assert_int_equal(thread_count(), threads_before);
    for (int i = 0; i < N; i++) {
        assert_true(atomic_load(&ps[i].ended));
        assert_int_equal(ps[i].status, UNI1_ERR_INTERRUPTED);
        assert_int_equal(atomic_load(&ps[i].done_calls), 1);
    }
    for (int i = 1; i < N; i += 2) {
        assert_true(uni1_task_done(ts[i]));
        uni1_task_release(ts[i]);
    }
}

/* The done callback of a task drops the last reference to its own client
 * (Python: a Generation nobody holds, whose end frees the Client): the
 * client is freed on its own engine thread, which cannot join itself. */
typedef struct closer {
    uni1_client *c;
    atomic_int freed;
} closer;

static void free_own_client(uni1_task *t, void *ud)
{
    (void)t;
    closer *k = ud;
    uni1_client_free(k->c);
    atomic_store(&k->freed, 1);
}

static void test_client_freed_by_a_done_callback_on_its_engine(void **state)
{
    (void)state;
    enum { N = 3 };
    int threads_before = thread_count();
    closer k = {make_client(), 0};
    probe ps[N], last = {0};
    uni1_task *ts[N];
    memset(ps, 0, sizeof ps);
    for (int i = 0; i < N; i++)
        ts[i] = start_sleeper(k.c, &ps[i], 60, 0);
    for (int i = 0; i < N; i++)
        wait_started(&ps[i]);
    last.sleep_for = 0.01;
    uni1_task *t = uni1_task_start(k.c, sleeper, &last, 0, free_own_client, &k);
    assert_non_null(t);
    uni1_task_release(t);
    double until = uni1_monotonic() + 5 * slack();
    while (!atomic_load(&k.freed) && uni1_monotonic() < until)
        usleep(1000);
    assert_true(atomic_load(&k.freed));
    /* the others were cancelled and ended before the client went */
    for (int i = 0; i < N; i++) {
        assert_true(uni1_task_done(ts[i]));
        assert_int_equal(ps[i].status, UNI1_ERR_INTERRUPTED);
        assert_int_equal(atomic_load(&ps[i].done_calls), 1);
        uni1_task_release(ts[i]);
    }
    /* and the engine thread leaves by itself */
    until = uni1_monotonic() + 5 * slack();
    while (thread_count() != threads_before && uni1_monotonic() < until)
        usleep(1000);
    assert_int_equal(thread_count(), threads_before);
}

static void test_deadline_of_a_task(void **state)
{
    (void)state;
    uni1_client *c = make_client();
    probe p = {0};
    double t0 = uni1_monotonic();
    double deadline = t0 + 0.3;
    uni1_task *t = start_sleeper(c, &p, 60, deadline);
    assert_int_equal(uni1_tasks_wait(&t, 1, 5 * slack()), 0);
    double took = uni1_monotonic() - t0;
    assert_int_equal(p.status, UNI1_ERR_TIMEOUT);
    assert_true(p.deadline_seen == deadline);
    assert_true(took >= 0.29);
    assert_true(took < 0.3 + 0.3 * slack());
    /* a sleep that ends before the deadline is not cut */
    probe q = {0};
    uni1_task *u = start_sleeper(c, &q, 0.05, uni1_monotonic() + 30);
    assert_int_equal(uni1_tasks_wait(&u, 1, 5 * slack()), 0);
    assert_int_equal(q.status, UNI1_OK);
    uni1_task_release(t);
    uni1_task_release(u);
    uni1_client_free(c);
}

/* A blocking call of one thread run on the engine: the task uses the
 * caller's session (its deadline; the error stays there) and gives it back
 * to the caller, not to the pool. */
static void test_task_on_a_lent_session(void **state)
{
    (void)state;
    uni1_client *c = make_client();
    uni1_session *s = uni1_session_acquire(c);
    assert_non_null(s);
    double t0 = uni1_monotonic();
    s->deadline = t0 + 0.2;
    probe p = {0};
    p.sleep_for = 60;
    uni1_task *t = uni1_task_start_on(s, sleeper, &p, on_done, &p);
    assert_non_null(t);
    assert_int_equal(uni1_tasks_wait(&t, 1, 5 * slack()), 0);
    assert_true(uni1_monotonic() - t0 < 0.2 + 0.3 * slack());
    assert_int_equal(p.status, UNI1_ERR_TIMEOUT);
    assert_true(p.deadline_seen == t0 + 0.2);
    uni1_task_release(t);
    pthread_mutex_lock(&c->lock);
    unsigned out = c->sessions_out;
    pthread_mutex_unlock(&c->lock);
    assert_int_equal(out, 1); /* the engine did not give it back */
    assert_null(s->task);
    assert_int_equal(uni1_session_error(s)->status, UNI1_ERR_TIMEOUT);
    /* cancel reaches a task on a lent session too */
    s->deadline = 0;
    probe q = {0};
    q.sleep_for = 60;
    uni1_task *u = uni1_task_start_on(s, sleeper, &q, NULL, NULL);
    assert_non_null(u);
    wait_started(&q);
    uni1_task_cancel(u);
    assert_int_equal(uni1_tasks_wait(&u, 1, 5 * slack()), 0);
    assert_int_equal(q.status, UNI1_ERR_INTERRUPTED);
    uni1_task_release(u);
    uni1_session_release(s);
    uni1_client_free(c);
}

/* In a child, assertions cannot go through cmocka (its failure would unwind
 * into the child's copy of the runner): each check exits with its own code. */
#define CHILD_CHECK(cond, code)                                                                    \
    do {                                                                                           \
        if (!(cond))                                                                               \
            _exit(code);                                                                           \
    } while (0)

static void test_fork_child_gets_a_new_engine(void **state)
{
    (void)state;
    uni1_client *c = make_client();
    probe p = {0};
    uni1_task *t = start_sleeper(c, &p, 60, 0);
    wait_started(&p);
    /* A task nobody holds but its engine, of another client: the child
     * leaves it alone (valgrind checks the child's exit too), the parent's
     * uni1_client_free ends it. */
    uni1_client *other = make_client();
    probe po = {0};
    uni1_task_release(start_sleeper(other, &po, 60, 0));
    wait_started(&po);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        CHILD_CHECK(uni1_task_forked(t), 10);
        CHILD_CHECK(uni1_task_done(t), 11);
        CHILD_CHECK(uni1_tasks_wait(&t, 1, 0) == 0, 12);
        uni1_task_cancel(t); /* nothing to wake here; must not touch the dead engine */
        probe q = {0};
        q.sleep_for = 0.05;
        uni1_task *u = uni1_task_start(c, sleeper, &q, 0, on_done, &q);
        CHILD_CHECK(u != NULL, 13);
        CHILD_CHECK(uni1_tasks_wait(&u, 1, 10) == 0, 14);
        CHILD_CHECK(!uni1_task_forked(u), 15);
        CHILD_CHECK(q.status == UNI1_OK, 16);
        CHILD_CHECK(!pthread_equal(q.thread, pthread_self()), 17);
        /* the child's engine works like any: fd, cancel */
        int fd = uni1_engine_fd(c);
        CHILD_CHECK(fd >= 0 && readable(fd, (int)(5000 * slack())), 18);
        probe r = {0};
        r.sleep_for = 60;
        uni1_task *v = uni1_task_start(c, sleeper, &r, 0, NULL, NULL);
        CHILD_CHECK(v != NULL, 19);
        uni1_task_cancel(v);
        CHILD_CHECK(uni1_tasks_wait(&v, 1, 10) == 0, 20);
        CHILD_CHECK(r.status == UNI1_ERR_INTERRUPTED, 21);
        uni1_task_release(u);
        uni1_task_release(v);
        uni1_client_free(c);
        CHILD_CHECK(atomic_load(&q.done_calls) == 1, 22);
        _exit(0);
    }
    int wst = 0;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFEXITED(wst));
    assert_int_equal(WEXITSTATUS(wst), 0);
    /* the parent's task is untouched by the fork */
    assert_false(uni1_task_forked(t));
    assert_false(uni1_task_done(t));
    uni1_task_cancel(t);
    assert_int_equal(uni1_tasks_wait(&t, 1, 5), 0);
    assert_int_equal(p.status, UNI1_ERR_INTERRUPTED);
    uni1_task_release(t);
    uni1_client_free(c);
    uni1_client_free(other);
    assert_int_equal(po.status, UNI1_ERR_INTERRUPTED);
}

/* fork() at any moment of a task's start (queued, being picked up, running)
 * leaves it done and forked in the child, never in limbo there. */
static void test_fork_at_any_moment_of_a_start(void **state)
{
    (void)state;
    const int rounds = RUNNING_ON_VALGRIND ? 10 : 120;
    uni1_client *c = make_client();
    for (int i = 0; i < rounds; i++) {
        probe p = {0};
        uni1_task *t = start_sleeper(c, &p, 60, 0);
        for (volatile int spin = 0; spin < (i % 60) * 2000; spin++)
            ;
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* The verdict goes through the pipe, then the child becomes
             * another program: what the parent's engine held at the fork (a
             * fiber half made, say) is leaked in a child on purpose, and no
             * leak check (valgrind's at exit) should count it. */
            char ok = uni1_task_forked(t) && uni1_tasks_wait(&t, 1, 0) == 0;
            if (write(fds[1], &ok, 1) == 1)
                execl("/bin/true", "true", (char *)NULL);
            _exit(1);
        }
        close(fds[1]);
        char ok = 0;
        ssize_t got = read(fds[0], &ok, 1);
        close(fds[0]);
        int wst = 0;
        assert_int_equal(waitpid(pid, &wst, 0), pid);
        if (got != 1 || !ok)
            fail_msg("round %d: the parent's task is not done in the child", i);
        uni1_task_cancel(t);
        assert_int_equal(uni1_tasks_wait(&t, 1, 5 * slack()), 0);
        uni1_task_release(t);
    }
    uni1_client_free(c);
}

/* fork() while the engine is picking up a batch of started tasks (each new
 * one gets a session and a stack, one after the other): every one of them
 * is done and forked in the child, whichever step it was at. */
static void test_fork_while_a_batch_is_picked_up(void **state)
{
    (void)state;
    enum { N = 200 };
    uni1_client *c = make_client();
    atomic_int go = 0;
    uni1_task *h = uni1_task_start(c, hog, &go, 0, NULL, NULL);
    assert_non_null(h);
    while (atomic_load(&go) != 1)
        usleep(1000);
    probe *ps = calloc(N, sizeof *ps);
    uni1_task **ts = calloc(N, sizeof *ts);
    assert_non_null(ps);
    assert_non_null(ts);
    for (int i = 0; i < N; i++)
        ts[i] = start_sleeper(c, &ps[i], 60, 0);
    atomic_store(&go, 2); /* the engine takes the whole batch */
    for (unsigned out = 0; out < N / 2;) {
        /* half of the batch has its session: the rest is on its way */
        pthread_mutex_lock(&c->lock);
        out = c->sessions_out;
        pthread_mutex_unlock(&c->lock);
    }
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char missed = 0;
        for (int i = 0; i < N; i++)
            missed += !uni1_task_forked(ts[i]);
        if (write(fds[1], &missed, 1) == 1)
            execl("/bin/true", "true", (char *)NULL);
        _exit(1);
    }
    close(fds[1]);
    char missed = -1;
    ssize_t got = read(fds[0], &missed, 1);
    close(fds[0]);
    int wst = 0;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_int_equal(got, 1);
    if (missed)
        fail_msg("%d of %d tasks neither queued nor running in the child", missed, N);
    uni1_client_free(c);
    for (int i = 0; i < N; i++)
        uni1_task_release(ts[i]);
    uni1_task_release(h);
    free(ps);
    free(ts);
}

int main(void)
{
    if (init_library() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_runs_and_completes),
        cmocka_unit_test(test_many_sleeping_tasks_share_one_thread),
        cmocka_unit_test(test_cancel_wakes_a_sleeping_task),
        cmocka_unit_test(test_cancel_of_a_queued_task_keeps_the_others),
        cmocka_unit_test(test_tasks_wait_first_done_and_timeout),
        cmocka_unit_test(test_tasks_wait_wakes_the_waiters_of_the_task_that_ended),
        cmocka_unit_test(test_engine_fd_signals_completions),
        cmocka_unit_test(test_engine_fd_never_loses_a_completion),
        cmocka_unit_test(test_client_free_cancels_and_joins_running_tasks),
        cmocka_unit_test(test_client_freed_by_a_done_callback_on_its_engine),
        cmocka_unit_test(test_deadline_of_a_task),
        cmocka_unit_test(test_task_on_a_lent_session),
        cmocka_unit_test(test_fork_child_gets_a_new_engine),
        cmocka_unit_test(test_fork_at_any_moment_of_a_start),
        cmocka_unit_test(test_fork_while_a_batch_is_picked_up),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    uni1_global_cleanup();
    return failed;
}
