/* Blocking calls: every one runs on the client's engine (uni1.h, "The
 * engine") while the calling thread waits with the GIL released, in the
 * manner of CPython's sock_call_ex and pysleep: it wakes every
 * PY_WAIT_SLICE seconds, takes the GIL back, runs PyErr_CheckSignals() (so
 * Ctrl-C raises KeyboardInterrupt within about 50 ms), looks for a cancel()
 * of the job waited on or a close() of the client, and hands the progress of
 * a wait to Python. Anything that stops the call cancels its task, which
 * ends at once. The engine thread never runs Python for these calls, except
 * the debug log forwarder. */
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "binding.h"

/* ---- the exit gate -------------------------------------------------------
 * An engine thread that asks for the GIL once the interpreter is finalizing
 * is ended by CPython on the spot (PyThread_exit_thread), in the middle of
 * its turn: the rest of that turn (other tasks' completions, the engine's
 * bookkeeping) never runs, and a done callback that had started is cut
 * short. So engine threads enter Python through this gate. _at_exit (an
 * atexit function: it runs before finalization starts) closes it, then
 * waits, with the GIL released, for the threads already inside to leave
 * (PY_EXIT_GRACE at most, for a callback that never returns). Atomics, not
 * a mutex: fork() may copy the gate at any moment, and the child, which has
 * no engine thread, starts with nobody inside. */
static atomic_int gate_closed;
static atomic_int gate_inside;
#define PY_EXIT_GRACE 10.0

int py_gate_enter(PyGILState_STATE *gs)
{
    atomic_fetch_add(&gate_inside, 1);
    if (atomic_load(&gate_closed)) {
        atomic_fetch_sub(&gate_inside, 1);
        return 0;
    }
    *gs = PyGILState_Ensure();
    return 1;
}

void py_gate_leave(PyGILState_STATE gs)
{
    PyGILState_Release(gs);
    atomic_fetch_sub(&gate_inside, 1);
}

void py_gate_forked_child(void)
{
    atomic_store(&gate_inside, 0);
}

PyObject *py_at_exit(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    atomic_store(&gate_closed, 1);
    double until = uni1_monotonic() + PY_EXIT_GRACE;
    Py_BEGIN_ALLOW_THREADS struct timespec ms = {0, 1000000};
    while (atomic_load(&gate_inside) > 0 && uni1_monotonic() < until)
        nanosleep(&ms, NULL);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

int py_call_begin(py_call *c, py_state *st, ClientObject *client, double deadline)
{
    memset(c, 0, sizeof *c);
    c->st = st;
    if (py_client_check_open(st, client) < 0)
        return -1;
    c->s = uni1_session_acquire(client->core);
    if (!c->s) {
        PyErr_NoMemory();
        return -1;
    }
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        uni1_session_release(c->s);
        c->s = NULL;
        PyErr_NoMemory();
        return -1;
    }
    c->mu_ready = 1;
    c->client = (ClientObject *)Py_NewRef(client);
    client->active++;
    c->requests_at_start = uni1_session_request_count(c->s);
    uni1_session_set_interrupt(c->s, NULL, NULL);
    uni1_session_set_deadline(c->s, deadline);
    return 0;
}

/* Ctrl-C, a cancel() of the job being waited on, or close() of the client:
 * decided with the GIL held. */
static int should_stop(py_call *c)
{
    if (PyErr_Occurred())
        return 1;
    if (PyErr_CheckSignals() < 0)
        return 1;
    if (c->job && c->job->cancel_gen != c->cancel_gen) {
        c->stop = PY_STOP_CANCEL;
        return 1;
    }
    if (c->client->closed) {
        c->stop = PY_STOP_CLOSED;
        return 1;
    }
    return 0;
}

/* With the GIL: the job the engine polled last goes to the Job object, then
 * to the user's progress callback. 1 when the callback raised. */
static int hand_progress(py_call *c)
{
    pthread_mutex_lock(&c->mu);
    int pending = c->polled_pending;
    uni1_job fresh = c->polled;
    memset(&c->polled, 0, sizeof c->polled);
    c->polled_pending = 0;
    pthread_mutex_unlock(&c->mu);
    if (!pending)
        return 0;
    JobObject *self = c->job;
    uni1_job_clear(&self->job);
    self->job = fresh;
    Py_CLEAR(self->raw_cache);
    if (c->progress) {
        PyObject *r = PyObject_CallFunctionObjArgs(c->progress, (PyObject *)self, NULL);
        if (!r)
            return 1;
        Py_DECREF(r);
    }
    return 0;
}

int py_wait(uni1_task *const *tasks, size_t n, double deadline, int (*tick)(void *), void *userdata)
{
    for (;;) {
        double slice = PY_WAIT_SLICE;
        if (deadline > 0) {
            double left = deadline - uni1_monotonic();
            if (left <= 0)
                return PY_WAIT_DEADLINE;
            if (left < slice)
                slice = left;
        }
        int i;
        Py_BEGIN_ALLOW_THREADS i = uni1_tasks_wait(tasks, n, slice);
        Py_END_ALLOW_THREADS if (i >= 0) return i;
        if (tick && tick(userdata))
            return PY_WAIT_STOPPED;
    }
}

/* py_call_run's look between slices: progress to Python, then whether to stop. */
static int call_tick(void *userdata)
{
    py_call *c = userdata;
    return (c->job && hand_progress(c)) || should_stop(c);
}

static void run_on_engine(uni1_session *s, void *userdata)
{
    py_call *c = userdata;
    c->rc = s ? c->fn(s, c->arg) : UNI1_ERR_NOMEM;
}

uni1_status py_call_run(py_call *c, py_core_fn fn, void *arg)
{
    c->fn = fn;
    c->arg = arg;
    c->rc = UNI1_ERR_NOMEM;
    if (PyErr_Occurred())
        return UNI1_ERR_INTERRUPTED;
    uni1_task *t = uni1_task_start_on(c->s, run_on_engine, c, NULL, NULL);
    if (!t)
        return UNI1_ERR_NOMEM;
    int stopping = py_wait(&t, 1, 0, call_tick, c) == PY_WAIT_STOPPED;
    if (stopping) {
        /* A cancelled task ends at once; its outputs are read after it. */
        uni1_task_cancel(t);
        py_wait(&t, 1, 0, NULL, NULL);
    }
    uni1_task_release(t);
    if (c->job && !stopping && hand_progress(c))
        return UNI1_ERR_INTERRUPTED;
    return c->rc;
}

PyObject *py_call_fail(py_call *c, uni1_status status, PyObject *job,
                       const uni1_generate_params *params)
{
    py_error_extra extra = {job, params, c->stop};
    return py_raise_core(c->st, status, uni1_session_error(c->s), &extra);
}

void py_call_finish(py_call *c)
{
    if (c->mu_ready) {
        uni1_job_clear(&c->polled);
        pthread_mutex_destroy(&c->mu);
        c->mu_ready = 0;
    }
    ClientObject *client = c->client;
    if (!client)
        return;
    client->requests += uni1_session_request_count(c->s) - c->requests_at_start;
    uni1_session_release(c->s);
    c->s = NULL;
    client->active--;
    if (client->closed && client->active == 0 && client->core)
        py_client_free_core(client);
    c->client = NULL;
    Py_DECREF(client);
}

/* Called by uni1_wait_job after every poll, on the engine thread: keeps the
 * job for the waiting thread (hand_progress). */
int py_wait_progress(void *userdata, const uni1_job *job)
{
    py_call *c = userdata;
    uni1_job fresh;
    if (uni1_job_copy(&fresh, job) != UNI1_OK)
        return 0; /* the next poll brings it; the final state comes back anyway */
    pthread_mutex_lock(&c->mu);
    uni1_job_clear(&c->polled);
    c->polled = fresh;
    c->polled_pending = 1;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

/* The core's log callback: forwards to logging.getLogger("scenario_uni1").
 * Installed only when that logger had DEBUG enabled at client creation. It
 * runs on the engine thread (or the thread creating the client), so it takes
 * the GIL itself; a failing handler is reported, never raised into a call. */
void py_log_forward(void *userdata, uni1_log_level level, const char *message)
{
    ClientObject *client = userdata;
    PyGILState_STATE gs;
    if (!client->logger || !py_gate_enter(&gs))
        return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *r = PyObject_CallMethod(client->logger, "log", "iN", (int)level, py_str(message));
    if (r)
        Py_DECREF(r);
    else
        PyErr_WriteUnraisable(client->logger);
    PyErr_Restore(type, value, tb);
    py_gate_leave(gs);
}
