/* One call into the core with the GIL released, in the manner of CPython's
 * sock_call_ex and pysleep: the core wakes at least every
 * UNI1_WAKE_INTERVAL_MS and calls the interrupt callback, which takes the GIL
 * back, runs PyErr_CheckSignals() (so Ctrl-C raises KeyboardInterrupt within
 * about 100 ms), looks for a cancel() or close() from another thread, and
 * releases the GIL again. */
#include <string.h>

#include "binding.h"

/* The call running on this thread with the GIL released, for the log
 * callback (which the core calls with only the client's userdata). A
 * callback that runs Python code may start a nested call; `outer` keeps the
 * chain. */
static _Thread_local py_call *current_call;

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
        return 1; /* e.g. a KeyboardInterrupt left by the log forwarder */
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

static int interrupt_cb(void *userdata)
{
    py_call *c = userdata;
    PyThreadState *ts = c->tstate;
    c->tstate = NULL;
    PyEval_RestoreThread(ts);
    int stop = should_stop(c);
    c->tstate = PyEval_SaveThread();
    return stop;
}

void py_call_allow_threads(py_call *c)
{
    uni1_session_set_interrupt(c->s, interrupt_cb, c);
    c->outer = current_call;
    current_call = c;
    c->tstate = PyEval_SaveThread();
}

void py_call_end_threads(py_call *c)
{
    PyThreadState *ts = c->tstate;
    c->tstate = NULL;
    PyEval_RestoreThread(ts);
    current_call = c->outer;
    c->outer = NULL;
    uni1_session_set_interrupt(c->s, NULL, NULL);
}

PyObject *py_call_fail(py_call *c, uni1_status status, PyObject *job,
                       const uni1_generate_params *params)
{
    py_error_extra extra = {job, params, c->stop};
    return py_raise_core(c->st, status, uni1_session_error(c->s), &extra);
}

void py_call_finish(py_call *c)
{
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

/* Called by uni1_wait_job after every poll, with the GIL released. Publishes
 * the new state on the Job object, then calls the user's callback. */
int py_wait_progress(void *userdata, const uni1_job *job)
{
    py_call *c = userdata;
    PyThreadState *ts = c->tstate;
    c->tstate = NULL;
    PyEval_RestoreThread(ts);
    int stop = 0;
    JobObject *self = c->job;
    uni1_job fresh;
    if (uni1_job_copy(&fresh, job) != UNI1_OK) {
        PyErr_NoMemory();
        stop = 1;
    } else {
        uni1_job_clear(&self->job);
        self->job = fresh;
        Py_CLEAR(self->raw_cache);
    }
    if (!stop && c->progress) {
        PyObject *r = PyObject_CallFunctionObjArgs(c->progress, (PyObject *)self, NULL);
        if (!r)
            stop = 1;
        Py_XDECREF(r);
    }
    if (!stop)
        stop = should_stop(c);
    c->tstate = PyEval_SaveThread();
    return stop;
}

/* The core's log callback: forwards to logging.getLogger("scenario_uni1").
 * Installed only when that logger had DEBUG enabled at client creation. */
void py_log_forward(void *userdata, uni1_log_level level, const char *message)
{
    ClientObject *client = userdata;
    py_call *c = current_call;
    /* Only the thread running a call, with its GIL released, can take the GIL
     * back safely; anything else is dropped. */
    if (!c || !c->tstate || c->client != client)
        return;
    PyThreadState *ts = c->tstate;
    c->tstate = NULL;
    PyEval_RestoreThread(ts);
    if (client->logger && !PyErr_Occurred()) {
        PyObject *r = PyObject_CallMethod(client->logger, "log", "iN", (int)level, py_str(message));
        if (r) {
            Py_DECREF(r);
        } else if (PyErr_ExceptionMatches(PyExc_Exception)) {
            /* A broken handler must not fail the request ... */
            PyErr_WriteUnraisable(client->logger);
        }
        /* ... but a KeyboardInterrupt raised in it stays pending, and the next
         * interrupt check stops the call with it. */
    }
    c->tstate = PyEval_SaveThread();
}
