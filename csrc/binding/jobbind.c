/* A Job's client: set when the binding makes the job on a client, or, for a
 * job rebuilt from its state (_rebuild_job: unpickling), by the glue through
 * Job._bind before the first request (scenario_uni1/_job.py decides which
 * client: the binding never looks one up). Its state, and copies. */
#include <string.h>

#include "binding.h"

PyObject *py_job_new(py_state *st, ClientObject *client, uni1_job *job, double cost)
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
    self->client = client ? (ClientObject *)Py_NewRef((PyObject *)client) : NULL;
    return (PyObject *)self;
}

/* The bound client, refused (ConfigurationError) once closed: every method
 * that may send a request asks this first. */
ClientObject *py_job_client(py_state *st, JobObject *self)
{
    if (!self->client) {
        PyErr_Format(PyExc_RuntimeError, "job %s is bound to no client (Job._bind first)",
                     self->job.id);
        return NULL;
    }
    if (py_client_check_open(st, self->client) < 0)
        return NULL;
    return self->client;
}

/* Job._bind(client): the client of a job rebuilt from its state. Whatever
 * the glue passes is checked to be the binding's Client before it is used as
 * a C struct; a job already bound keeps its client. */
PyObject *py_job_bind(PyObject *op, PyObject *client)
{
    JobObject *self = (JobObject *)op;
    py_state *st = PyType_GetModuleState(Py_TYPE(op));
    if (!st)
        return NULL;
    if (!PyObject_TypeCheck(client, st->client_type)) {
        PyObject *tn = py_type_name(client);
        if (tn) {
            PyErr_Format(PyExc_TypeError,
                         "the client for job %s must be a scenario_uni1 Client, not %U",
                         self->job.id, tn);
            Py_DECREF(tn);
        }
        return NULL;
    }
    if (self->client && self->client != (ClientObject *)client) {
        PyErr_Format(PyExc_RuntimeError, "job %s is already bound to another client", self->job.id);
        return NULL;
    }
    if (!self->client)
        self->client = (ClientObject *)Py_NewRef(client);
    Py_RETURN_NONE;
}

/* Job._state(): (job_id, raw_json or None, cost or None), what _rebuild_job
 * takes; a pickle is made of it (and never of the client). */
PyObject *py_job_state(PyObject *op, PyObject *unused)
{
    (void)unused;
    JobObject *self = (JobObject *)op;
    PyObject *raw =
        self->job.raw_json
            ? PyUnicode_DecodeUTF8(self->job.raw_json, (Py_ssize_t)self->job.raw_len, "replace")
            : Py_NewRef(Py_None);
    PyObject *cost = self->cost >= 0 ? PyFloat_FromDouble(self->cost) : Py_NewRef(Py_None);
    PyObject *r = NULL;
    if (raw && cost)
        r = Py_BuildValue("(sOO)", self->job.id, raw, cost);
    Py_XDECREF(raw);
    Py_XDECREF(cost);
    return r;
}

/* copy.copy and copy.deepcopy: the same state on the same client (a Client
 * holds connections and is never copied), or on none. */
PyObject *py_job_copy(PyObject *op, PyObject *unused)
{
    (void)unused;
    JobObject *self = (JobObject *)op;
    py_state *st = PyType_GetModuleState(Py_TYPE(op));
    uni1_job state;
    if (uni1_job_copy(&state, &self->job) != UNI1_OK)
        return PyErr_NoMemory();
    return py_job_new(st, self->client, &state, self->cost);
}

PyObject *py_job_deepcopy(PyObject *op, PyObject *memo)
{
    (void)memo; /* the copy shares nothing mutable with the original */
    return py_job_copy(op, NULL);
}
