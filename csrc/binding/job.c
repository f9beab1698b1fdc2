/* The Job type: a final heap type, made only by the binding (submit, job(),
 * _rebuild_job); scenario_uni1.Job (Python) holds one. It holds a strong
 * reference to its Client, so the client's core outlives every job that may
 * still use it. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"
#include "structmember.h"

#define PY_METHOD_FLAGS (METH_METHOD | METH_FASTCALL | METH_KEYWORDS)
#define PY_CMETHOD(f) ((PyCFunction)(void (*)(void))(f))

static py_state *job_state(PyObject *op)
{
    return PyType_GetModuleState(Py_TYPE(op));
}

static int job_traverse(PyObject *op, visitproc visit, void *arg)
{
    JobObject *self = (JobObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->client);
    Py_VISIT(self->raw_cache);
    return 0;
}

static int job_clear(PyObject *op)
{
    JobObject *self = (JobObject *)op;
    Py_CLEAR(self->client);
    Py_CLEAR(self->raw_cache);
    return 0;
}

static void job_dealloc(PyObject *op)
{
    JobObject *self = (JobObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (self->weakrefs)
        PyObject_ClearWeakRefs(op);
    job_clear(op);
    uni1_job_clear(&self->job);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(op);
    Py_DECREF(tp);
}

/* Replaces the job's state with a fresh copy from the server. */
static void job_replace(JobObject *self, uni1_job *fresh)
{
    uni1_job_clear(&self->job);
    self->job = *fresh;
    memset(fresh, 0, sizeof *fresh);
    Py_CLEAR(self->raw_cache);
}

PyObject *py_job_raw_dict(JobObject *self, py_state *st)
{
    if (!self->raw_cache) {
        if (self->job.raw_json)
            self->raw_cache = py_json_loads(st, self->job.raw_json, self->job.raw_len);
        else
            self->raw_cache = PyDict_New();
        if (!self->raw_cache)
            return NULL;
    }
    return Py_NewRef(self->raw_cache);
}

/* ---- properties ---------------------------------------------------------- */

static PyObject *get_id(PyObject *op, void *closure)
{
    (void)closure;
    return py_str(((JobObject *)op)->job.id);
}

static PyObject *get_status(PyObject *op, void *closure)
{
    (void)closure;
    return py_str(((JobObject *)op)->job.status);
}

static PyObject *get_progress(PyObject *op, void *closure)
{
    (void)closure;
    return PyFloat_FromDouble(((JobObject *)op)->job.progress);
}

static PyObject *get_done(PyObject *op, void *closure)
{
    (void)closure;
    return PyBool_FromLong(uni1_job_state_is_terminal(((JobObject *)op)->job.state));
}

static PyObject *get_asset_ids(PyObject *op, void *closure)
{
    (void)closure;
    const uni1_job *j = &((JobObject *)op)->job;
    PyObject *t = PyTuple_New((Py_ssize_t)j->n_assets);
    for (size_t i = 0; t && i < j->n_assets; i++) {
        PyObject *s = py_str(j->asset_ids[i]);
        if (!s || PyTuple_SetItem(t, (Py_ssize_t)i, s) < 0)
            Py_CLEAR(t);
    }
    return t;
}

static PyObject *get_error(PyObject *op, void *closure)
{
    (void)closure;
    return py_str_or_none(((JobObject *)op)->job.error);
}

static PyObject *get_hint(PyObject *op, void *closure)
{
    (void)closure;
    return py_str_or_none(((JobObject *)op)->job.hint);
}

static PyObject *get_cost(PyObject *op, void *closure)
{
    (void)closure;
    double cost = ((JobObject *)op)->cost;
    if (cost < 0)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(cost);
}

static PyObject *get_raw(PyObject *op, void *closure)
{
    (void)closure;
    return py_job_raw_dict((JobObject *)op, job_state(op));
}

static PyGetSetDef job_getset[] = {
    {"id", get_id, NULL, "The job id.", NULL},
    {"status", get_status, NULL,
     "pending, queued, warming-up, in-progress, finalizing, success, failure, canceled (or the "
     "server's own word).",
     NULL},
    {"progress", get_progress, NULL, "Progress from 0 to 1, as of the last poll.", NULL},
    {"done", get_done, NULL, "Whether the status is terminal.", NULL},
    {"asset_ids", get_asset_ids, NULL, "The ids of the generated assets (tuple).", NULL},
    {"error", get_error, NULL, "The failure reason, or None.", NULL},
    {"hint", get_hint, NULL, "The server's hint about a failure, or None.", NULL},
    {"cost", get_cost, NULL, "Creative units from the submit response, or None.", NULL},
    {"raw", get_raw, NULL, "The last job JSON as a dict (unknown fields kept).", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyObject *job_repr(PyObject *op)
{
    JobObject *self = (JobObject *)op;
    PyObject *id = py_str(self->job.id);
    PyObject *status = id ? py_str(self->job.status) : NULL;
    PyObject *progress =
        status ? PyFloat_FromDouble(floor(self->job.progress * 100 + 0.5) / 100) : NULL;
    PyObject *r = NULL;
    if (progress)
        r = PyUnicode_FromFormat("<scenario_uni1.Job id=%R status=%R progress=%R>", id, status,
                                 progress);
    Py_XDECREF(id);
    Py_XDECREF(status);
    Py_XDECREF(progress);
    return r;
}

/* ---- waiting ------------------------------------------------------------- */

/* JobFailedError / JobCanceledError for a job already known to be over. */
static int raise_terminal(py_state *st, JobObject *self)
{
    uni1_error e;
    memset(&e, 0, sizeof e);
    e.retry_after = -1;
    uni1_status status;
    if (self->job.state == UNI1_JOB_FAILURE) {
        status = UNI1_ERR_JOB_FAILED;
        snprintf(e.message, sizeof e.message, "job %s failed: %s", self->job.id,
                 self->job.error ? self->job.error : "no reason given");
    } else {
        status = UNI1_ERR_JOB_CANCELED;
        snprintf(e.message, sizeof e.message, "job %s was canceled", self->job.id);
    }
    e.status = status;
    py_error_extra extra = {(PyObject *)self, NULL, PY_STOP_NONE};
    py_raise_core(st, status, &e, &extra);
    return -1;
}

/* Polls until a terminal state. 0 on success, -1 with an exception. */
int py_job_wait_impl(JobObject *self, py_state *st, double deadline, PyObject *progress)
{
    switch (self->job.state) {
    case UNI1_JOB_SUCCESS:
        return 0;
    case UNI1_JOB_FAILURE:
    case UNI1_JOB_CANCELED:
        return raise_terminal(st, self);
    default:
        break;
    }
    if (self->waiting) {
        /* pycurl's way: refuse a busy handle rather than queue behind it. */
        PyErr_Format(PyExc_RuntimeError,
                     "wait() is already running for job %s (in another thread, or this is its "
                     "progress callback); wait for a job in one thread at a time, or re-attach "
                     "with client.job(job_id)",
                     self->job.id);
        return -1;
    }
    ClientObject *client = py_job_client(st, self);
    py_call c;
    if (!client || py_call_begin(&c, st, client, deadline) < 0)
        return -1;
    uni1_job work;
    if (uni1_job_copy(&work, &self->job) != UNI1_OK) {
        PyErr_NoMemory();
        py_call_finish(&c);
        return -1;
    }
    Py_INCREF(self);
    c.job = self;
    c.progress = progress;
    c.cancel_gen = self->cancel_gen;
    self->waiting = 1;

    uni1_status rc = py_run_wait_job(&c, &work);

    self->waiting = 0;
    int ret = 0;
    /* py_call_run handed every poll to self, the last one included. */
    if (rc != UNI1_OK || PyErr_Occurred()) {
        py_call_fail(&c, rc, (PyObject *)self, NULL);
        ret = -1;
    }
    py_call_finish(&c);
    uni1_job_clear(&work);
    Py_DECREF(self);
    return ret;
}

static PyObject *job_wait(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                          PyObject *kwnames)
{
    py_state *st = PyType_GetModuleState(cls);
    static const char *const names[] = {"timeout", "progress", NULL};
    static const py_argspec spec = {"wait", names, 1, 0};
    PyObject *a[2];
    if (py_parse_args(&spec, args, (Py_ssize_t)nargs, kwnames, a) < 0)
        return NULL;
    double deadline;
    if (py_deadline(st, a[0], &deadline) < 0)
        return NULL;
    /* progress=True (a display) is the glue's to choose: scenario_uni1.Job
     * passes the display's callable here. */
    PyObject *progress = NULL;
    if (a[1] && a[1] != Py_None && a[1] != Py_False) {
        if (!PyCallable_Check(a[1])) {
            PyErr_SetString(st->InvalidRequestTypeError,
                            "progress must be True, False, None or a callable taking the job");
            return NULL;
        }
        progress = a[1];
    }
    int rc = py_job_wait_impl((JobObject *)op, st, deadline, progress);
    if (rc < 0)
        return NULL;
    return Py_NewRef(op);
}

static PyObject *job_refresh(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                             PyObject *kwnames)
{
    py_state *st = PyType_GetModuleState(cls);
    JobObject *self = (JobObject *)op;
    static const char *const names[] = {"timeout", NULL};
    static const py_argspec spec = {"refresh", names, 0, 0};
    PyObject *a[1];
    double deadline;
    if (py_parse_args(&spec, args, (Py_ssize_t)nargs, kwnames, a) < 0 ||
        py_deadline(st, a[0], &deadline) < 0)
        return NULL;
    ClientObject *client = py_job_client(st, self);
    if (!client)
        return NULL;
    py_id id;
    memcpy(id, self->job.id, sizeof id);
    py_call c;
    if (py_call_begin(&c, st, client, deadline) < 0)
        return NULL;
    uni1_job fresh;
    uni1_status rc = py_run_get_job(&c, id, &fresh);
    PyObject *result = NULL;
    if (rc != UNI1_OK || PyErr_Occurred()) {
        py_call_fail(&c, rc, NULL, NULL);
    } else {
        job_replace(self, &fresh);
        result = Py_NewRef(op);
    }
    uni1_job_clear(&fresh);
    py_call_finish(&c);
    return result;
}

static PyObject *job_cancel(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                            PyObject *kwnames)
{
    py_state *st = PyType_GetModuleState(cls);
    JobObject *self = (JobObject *)op;
    static const char *const names[] = {"timeout", NULL};
    static const py_argspec spec = {"cancel", names, 0, 0};
    PyObject *a[1];
    double deadline;
    if (py_parse_args(&spec, args, (Py_ssize_t)nargs, kwnames, a) < 0 ||
        py_deadline(st, a[0], &deadline) < 0)
        return NULL;
    ClientObject *client = py_job_client(st, self);
    if (!client)
        return NULL;
    /* Local waiting stops whatever the server says (like sqlite's
     * Connection.interrupt()): the waits running now see the new generation
     * at their next look (every PY_WAIT_SLICE) and cancel their task. */
    self->cancel_gen++;
    py_id id;
    memcpy(id, self->job.id, sizeof id);
    py_call c;
    if (py_call_begin(&c, st, client, deadline) < 0)
        return NULL;
    uni1_status rc = py_run_cancel_job(&c, id);
    PyObject *result = NULL;
    if (rc != UNI1_OK || PyErr_Occurred())
        py_call_fail(&c, rc, NULL, NULL);
    else
        result = Py_NewRef(Py_None);
    py_call_finish(&c);
    return result;
}

static PyMethodDef job_methods[] = {
    {"refresh", PY_CMETHOD(job_refresh), PY_METHOD_FLAGS,
     "refresh($self, *, timeout=None)\n--\n\nOne GET; updates the job in place and returns it."},
    {"wait", PY_CMETHOD(job_wait), PY_METHOD_FLAGS,
     "wait($self, timeout=None, *, progress=None)\n--\n\n"
     "Poll until a terminal status (GIL released; Ctrl-C works). Returns the job.\n\n"
     "timeout is one deadline for the whole wait (TimeoutError). progress is False/None, or a "
     "callable taking this job, called after each poll. Raises JobFailedError or JobCanceledError "
     "when the job ends badly."},
    {"images", PY_CMETHOD(py_job_images), PY_METHOD_FLAGS,
     "images($self, *, timeout=None)\n--\n\nWait if needed, then fetch every asset into memory: a "
     "list of (data, mime_type, asset_id, width, height) tuples."},
    {"download", PY_CMETHOD(py_job_download), PY_METHOD_FLAGS,
     "download($self, dest='.', *, overwrite=False, timeout=None, skip=None)\n--\n\n"
     "Wait if needed, then stream every asset to <dest>/<asset_id>.<ext>, atomically, except "
     "those for which skip(asset_id, path) is true. Returns (asset_id, path, fetched) for each "
     "asset."},
    {"cancel", PY_CMETHOD(job_cancel), PY_METHOD_FLAGS,
     "cancel($self, *, timeout=None)\n--\n\nAsk the server to cancel, and stop the waits running "
     "on this job now (they raise JobCanceledError). A refusal raises APIError."},
    {"_bind", py_job_bind, METH_O,
     "_bind($self, client, /)\n--\n\nThe client of a job rebuilt from its state (a job bound "
     "already keeps its own)."},
    {"_state", py_job_state, METH_NOARGS,
     "_state($self, /)\n--\n\n(job_id, raw_json, cost): what _rebuild_job takes."},
    {"__copy__", py_job_copy, METH_NOARGS,
     "__copy__($self, /)\n--\n\nThe same job on the same client."},
    {"__deepcopy__", py_job_deepcopy, METH_O,
     "__deepcopy__($self, memo, /)\n--\n\nThe same job on the same client."},
    {NULL, NULL, 0, NULL}};

/* The limited API of 3.10 has no Py_TPFLAGS_MANAGED_WEAKREF: the weakref
 * list offset is declared as this special member. */
static PyMemberDef job_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(JobObject, weakrefs), READONLY, NULL},
    {NULL, 0, 0, 0, NULL}};

static PyType_Slot job_slots[] = {
    {Py_tp_members, job_members},
    {Py_tp_doc, "A generation job on the server (made by Client.generate or Client.job)."},
    {Py_tp_dealloc, job_dealloc},
    {Py_tp_traverse, job_traverse},
    {Py_tp_clear, job_clear},
    {Py_tp_repr, job_repr},
    {Py_tp_methods, job_methods},
    {Py_tp_getset, job_getset},
    {0, NULL}};

PyType_Spec py_job_spec = {
    .name = "scenario_uni1._core.Job",
    .basicsize = sizeof(JobObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = job_slots,
};
