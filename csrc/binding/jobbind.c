/* Where a Job belongs: made on a client, or unpickled with only the place it
 * came from (base_url, project_id) and bound to a client of this process at
 * its first request; pickling and copying. */
#include <string.h>

#include "binding.h"

static JobObject *job_alloc(py_state *st, uni1_job *job, double cost)
{
    allocfunc alloc = (allocfunc)PyType_GetSlot(st->job_type, Py_tp_alloc);
    JobObject *self = (JobObject *)alloc(st->job_type, 0);
    if (!self) {
        uni1_job_clear(job);
        return NULL;
    }
    self->job = *job;
    memset(job, 0, sizeof *job);
    self->cost = cost >= 0 ? cost : -1;
    return self;
}

PyObject *py_job_new(py_state *st, ClientObject *client, uni1_job *job, double cost)
{
    JobObject *self = job_alloc(st, job, cost);
    if (self)
        self->client = (ClientObject *)Py_NewRef(client);
    return (PyObject *)self;
}

PyObject *py_job_new_unbound(py_state *st, PyObject *base_url, PyObject *project_id, uni1_job *job,
                             double cost)
{
    JobObject *self = job_alloc(st, job, cost);
    if (self) {
        self->base_url = Py_NewRef(base_url);
        self->project_id = Py_NewRef(project_id);
    }
    return (PyObject *)self;
}

/* The client of the job. An unpickled job has none until it first needs one:
 * then the glue's client_for(base_url, project_id) gives it a live client of
 * this process for the same server and project, or builds one from the
 * environment (the only place unpickling can meet ConfigurationError).
 * Whatever the hook returns is checked to be a real Client before it is
 * used as a C struct. Borrowed reference; NULL with an exception. */
ClientObject *py_job_bind(py_state *st, JobObject *self)
{
    if (self->client)
        return self->client;
    if (!st->client_for) {
        PyErr_SetString(PyExc_RuntimeError,
                        "scenario_uni1 is not initialised: import scenario_uni1 to use "
                        "unpickled jobs");
        return NULL;
    }
    PyObject *client =
        PyObject_CallFunctionObjArgs(st->client_for, self->base_url ? self->base_url : Py_None,
                                     self->project_id ? self->project_id : Py_None, NULL);
    if (!client)
        return NULL;
    if (!PyObject_TypeCheck(client, st->client_type)) {
        PyObject *tn = py_type_name(client);
        if (tn) {
            PyErr_Format(PyExc_TypeError,
                         "the client for job %s must be a scenario_uni1 Client, not %U",
                         self->job.id, tn);
            Py_DECREF(tn);
        }
        Py_DECREF(client);
        return NULL;
    }
    if (self->client) {
        /* The hook ran Python code: another thread may have bound it. */
        Py_DECREF(client);
    } else {
        self->client = (ClientObject *)client;
        Py_CLEAR(self->base_url);
        Py_CLEAR(self->project_id);
    }
    return self->client;
}

/* The bound client, refused (ConfigurationError) once closed: every method
 * that may send a request asks this first. */
ClientObject *py_job_client(py_state *st, JobObject *self)
{
    ClientObject *client = py_job_bind(st, self);
    if (client && py_client_check_open(st, client) < 0)
        return NULL;
    return client;
}

/* A pickle carries the job's state and where it belongs (base_url,
 * project_id), never the client or its credentials. */
PyObject *py_job_reduce(PyObject *op, PyObject *unused)
{
    (void)unused;
    JobObject *self = (JobObject *)op;
    PyObject *module = PyType_GetModule(Py_TYPE(op));
    if (!module)
        return NULL;
    PyObject *rebuild = PyObject_GetAttrString(module, "_rebuild_job");
    if (!rebuild)
        return NULL;
    PyObject *base_url = self->client ? self->client->base_url : self->base_url;
    PyObject *project_id = self->client ? self->client->project_id : self->project_id;
    PyObject *raw =
        self->job.raw_json
            ? PyUnicode_DecodeUTF8(self->job.raw_json, (Py_ssize_t)self->job.raw_len, "replace")
            : Py_NewRef(Py_None);
    PyObject *cost = self->cost >= 0 ? PyFloat_FromDouble(self->cost) : Py_NewRef(Py_None);
    PyObject *r = NULL;
    if (raw && cost)
        r = Py_BuildValue("(O(sOOOO))", rebuild, self->job.id, raw, cost,
                          base_url ? base_url : Py_None, project_id ? project_id : Py_None);
    Py_DECREF(rebuild);
    Py_XDECREF(raw);
    Py_XDECREF(cost);
    return r;
}

/* copy.copy and copy.deepcopy: the same state on the same client (a Client
 * holds connections and is never copied). */
PyObject *py_job_copy(PyObject *op, PyObject *unused)
{
    (void)unused;
    JobObject *self = (JobObject *)op;
    py_state *st = PyType_GetModuleState(Py_TYPE(op));
    uni1_job state;
    if (uni1_job_copy(&state, &self->job) != UNI1_OK)
        return PyErr_NoMemory();
    if (self->client)
        return py_job_new(st, self->client, &state, self->cost);
    return py_job_new_unbound(st, self->base_url ? self->base_url : Py_None,
                              self->project_id ? self->project_id : Py_None, &state, self->cost);
}

PyObject *py_job_deepcopy(PyObject *op, PyObject *memo)
{
    (void)memo; /* the copy shares nothing mutable with the original */
    return py_job_copy(op, NULL);
}
