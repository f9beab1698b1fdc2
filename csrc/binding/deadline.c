/* The one deadline type. A timeout is checked once, where it enters (a
 * public call's timeout=, or _core.Deadline(timeout) in the glue), and from
 * then on travels as an absolute uni1_monotonic() time: the glue hands the
 * Deadline itself to each step of a sequence (uploads, submit, wait, fetch)
 * as their timeout=, and the binding gives its time to the core
 * (uni1_session_set_deadline) unchanged, never through "seconds left". */
#include <math.h>

#include "binding.h"

typedef struct DeadlineObject {
    PyObject_HEAD double at; /* absolute uni1_monotonic() seconds; 0: none */
} DeadlineObject;

/* The rule for every timeout argument: None, inf or a huge number is no
 * deadline; anything else a number of seconds >= 0 (not a bool). */
static int timeout_to_deadline(py_state *st, PyObject *timeout, double *deadline)
{
    *deadline = 0;
    double t = 0;
    int given =
        py_arg_seconds(st, PY_ARG_CALL, timeout, "timeout", PY_ALLOW_NONE | PY_ALLOW_INF, &t);
    if (given <= 0 || isinf(t))
        return given; /* error, or no deadline */
    *deadline = uni1_monotonic() + t;
    /* 0 means "no deadline" to the core; a zero timeout must still expire. */
    if (*deadline == 0)
        *deadline = 1e-9;
    return 0;
}

int py_deadline(py_state *st, PyObject *timeout, double *deadline)
{
    if (timeout && Py_TYPE(timeout) == st->deadline_type) {
        *deadline = ((DeadlineObject *)timeout)->at; /* checked when it was made */
        return 0;
    }
    return timeout_to_deadline(st, timeout, deadline);
}

static PyObject *deadline_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:Deadline", names, &timeout))
        return NULL;
    py_state *st = PyType_GetModuleState(type);
    if (!st)
        return NULL;
    double at;
    if (py_deadline(st, timeout, &at) < 0)
        return NULL;
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    DeadlineObject *self = (DeadlineObject *)alloc(type, 0);
    if (!self)
        return NULL;
    self->at = at;
    return (PyObject *)self;
}

static void deadline_dealloc(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
    tp_free(op);
    Py_DECREF(type);
}

static PyObject *deadline_remaining(PyObject *op, PyObject *unused)
{
    (void)unused;
    double at = ((DeadlineObject *)op)->at;
    if (at == 0)
        Py_RETURN_NONE;
    double left = at - uni1_monotonic();
    if (left <= 0) {
        py_state *st = PyType_GetModuleState(Py_TYPE(op));
        PyErr_SetString(st->TimeoutError, "the deadline passed");
        return NULL;
    }
    return PyFloat_FromDouble(left);
}

static PyObject *deadline_get_at(PyObject *op, void *closure)
{
    (void)closure;
    double at = ((DeadlineObject *)op)->at;
    if (at == 0)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(at);
}

static PyObject *deadline_repr(PyObject *op)
{
    double at = ((DeadlineObject *)op)->at;
    if (at == 0)
        return PyUnicode_FromString("<Deadline: none>");
    double left = at - uni1_monotonic();
    if (left <= 0)
        return PyUnicode_FromString("<Deadline: passed>");
    char text[64];
    PyOS_snprintf(text, sizeof text, "<Deadline: %.3f s left>", left);
    return PyUnicode_FromString(text);
}

static PyMethodDef deadline_methods[] = {
    {"remaining", deadline_remaining, METH_NOARGS,
     "remaining($self, /)\n--\n\n"
     "Seconds left (float), None for no deadline; TimeoutError once it has passed."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef deadline_getset[] = {
    {"at", deadline_get_at, NULL,
     "When it passes, in time.monotonic() seconds (the core's CLOCK_MONOTONIC), or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyType_Slot deadline_slots[] = {
    {Py_tp_doc, "Deadline(timeout=None)\n--\n\n"
                "A timeout checked once and turned into an absolute time; pass it as the "
                "timeout= of every step of a sequence (private: for the glue)."},
    {Py_tp_new, deadline_new},
    {Py_tp_dealloc, deadline_dealloc},
    {Py_tp_repr, deadline_repr},
    {Py_tp_methods, deadline_methods},
    {Py_tp_getset, deadline_getset},
    {0, NULL}};

PyType_Spec py_deadline_spec = {
    .name = "scenario_uni1._core.Deadline",
    .basicsize = sizeof(DeadlineObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = deadline_slots,
};
