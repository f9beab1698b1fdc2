/* Generation: the Python face of a core generation (uni1.h, "Generations"),
 * made by Client._start, and the waits on several of them.
 *
 * The pipeline runs on the client's engine thread. While it runs, the object
 * keeps a reference to itself (so a generation nobody holds still finishes
 * and calls its callbacks); the engine thread takes the GIL for the two
 * events (submitted, ended) and drops that reference at the end. Waiting
 * (result(), wait_first()) goes through py_wait (call.c), as every blocking
 * call does: the GIL released, signals looked at every PY_WAIT_SLICE. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"
#include "structmember.h"

typedef struct GenerationObject {
    PyObject_HEAD uni1_generation *g;
    py_state *st;
    ClientObject *client;
    PyObject *keepalive;    /* self while the pipeline runs */
    PyObject *callbacks;    /* list of callables, or NULL */
    PyObject *on_submitted; /* callable or NULL */
    PyObject *on_ready;     /* callable or NULL */
    PyObject *job;          /* Job, once known */
    PyObject *result;       /* cached result */
    PyObject *error;        /* cached exception */
    PyObject *weakrefs;
    int fetch;
    int to_files;
    uni1_gen_mode mode;
    int job_final; /* self->job holds the job as it ended */
} GenerationObject;

static const char *const stage_names[] = {"pending",     "uploading", "submitting", "waiting",
                                          "downloading", "done",      "failed",     "canceled"};

/* ---- engine-thread events ------------------------------------------------ */

static void call_each(PyObject *fns, PyObject *self)
{
    for (Py_ssize_t i = 0; i < PyList_Size(fns); i++) {
        PyObject *r = PyObject_CallFunctionObjArgs(PyList_GetItem(fns, i), self, NULL);
        if (r)
            Py_DECREF(r);
        else
            PyErr_WriteUnraisable(PyList_GetItem(fns, i));
    }
}

/* on_ready(gen, source_id, ref_ids): what the POST will carry. */
static void call_ready(GenerationObject *self)
{
    const char *src = uni1_generation_request_asset(self->g, -1);
    PyObject *source = src ? PyUnicode_FromString(src) : Py_NewRef(Py_None);
    PyObject *refs = PyList_New(0);
    const char *id;
    for (int i = 0; refs && (id = uni1_generation_request_asset(self->g, i)); i++) {
        PyObject *s = PyUnicode_FromString(id);
        if (!s || PyList_Append(refs, s) < 0)
            Py_CLEAR(refs);
        Py_XDECREF(s);
    }
    PyObject *r = source && refs ? PyObject_CallFunctionObjArgs(self->on_ready, (PyObject *)self,
                                                                source, refs, NULL)
                                 : NULL;
    if (r)
        Py_DECREF(r);
    else
        PyErr_WriteUnraisable(self->on_ready);
    Py_XDECREF(source);
    Py_XDECREF(refs);
}

static void on_event(uni1_generation *g, uni1_gen_event ev, void *userdata)
{
    (void)g;
    GenerationObject *self = userdata;
    PyGILState_STATE gs;
    if (!py_gate_enter(&gs))
        return;
    if (ev == UNI1_GEN_READY) {
        if (self->on_ready)
            call_ready(self);
    } else if (ev == UNI1_GEN_SUBMITTED) {
        if (self->on_submitted) {
            PyObject *r = PyObject_CallFunctionObjArgs(self->on_submitted, (PyObject *)self, NULL);
            if (r)
                Py_DECREF(r);
            else
                PyErr_WriteUnraisable(self->on_submitted);
        }
    } else {
        PyObject *fns = self->callbacks;
        self->callbacks = NULL;
        if (fns) {
            call_each(fns, (PyObject *)self);
            Py_DECREF(fns);
        }
        Py_CLEAR(self->on_submitted);
        Py_CLEAR(self->on_ready);
        PyObject *keep = self->keepalive;
        self->keepalive = NULL;
        Py_XDECREF(keep); /* may free self */
    }
    py_gate_leave(gs);
}

/* ---- state ------------------------------------------------------------- */

static int is_done(GenerationObject *self)
{
    return uni1_task_done(uni1_generation_task(self->g));
}

/* The Job: while running a thin one (id and status); once done the job as
 * the pipeline last saw it. */
static PyObject *get_job(GenerationObject *self)
{
    uni1_gen_snapshot snap;
    uni1_generation_snapshot(self->g, &snap);
    if (snap.done && !self->job_final && !uni1_task_forked(uni1_generation_task(self->g))) {
        const uni1_job *j = uni1_generation_job(self->g);
        if (j->id[0]) {
            uni1_job copy;
            if (uni1_job_copy(&copy, j) != UNI1_OK)
                return PyErr_NoMemory();
            PyObject *job =
                py_job_new(self->st, self->client, &copy, uni1_generation_cost(self->g));
            if (!job)
                return NULL;
            Py_XDECREF(self->job);
            self->job = job;
        }
        self->job_final = 1;
    } else if (!self->job && snap.job_id[0]) {
        uni1_job j;
        memset(&j, 0, sizeof j);
        snprintf(j.id, sizeof j.id, "%s", snap.job_id);
        snprintf(j.status, sizeof j.status, "%s", snap.job_status[0] ? snap.job_status : "queued");
        j.state = uni1_job_state_from_string(j.status);
        j.progress = snap.progress;
        self->job = py_job_new(self->st, self->client, &j, -1);
        if (!self->job)
            return NULL;
    } else if (self->job && !snap.done && snap.job_status[0]) {
        /* Keep the thin job's status current. */
        JobObject *jo = (JobObject *)self->job;
        if (strcmp(jo->job.status, snap.job_status) != 0) {
            snprintf(jo->job.status, sizeof jo->job.status, "%s", snap.job_status);
            jo->job.state = uni1_job_state_from_string(jo->job.status);
        }
        jo->job.progress = snap.progress;
    }
    return Py_NewRef(self->job ? self->job : (PyObject *)Py_None);
}

/* The outcome as an exception object (cached), or NULL with none. */
static PyObject *get_error(GenerationObject *self)
{
    if (self->error)
        return self->error;
    uni1_status status = uni1_generation_status(self->g);
    if (status == UNI1_OK)
        return NULL;
    PyObject *job = get_job(self);
    if (!job)
        return NULL;
    uni1_gen_snapshot snap;
    uni1_generation_snapshot(self->g, &snap);
    py_error_extra extra = {job == Py_None ? NULL : job, NULL, PY_STOP_NONE};
    if (status == UNI1_ERR_INTERRUPTED)
        extra.stop = snap.stage == UNI1_GEN_CANCELED ? PY_STOP_CANCEL : PY_STOP_CLOSED;
    if (status == UNI1_ERR_INTERRUPTED && extra.stop == PY_STOP_CANCEL && !extra.job) {
        PyErr_SetString(self->st->JobCanceledError,
                        "cancel() was called before the job was submitted: nothing was paid");
    } else {
        py_raise_core(self->st, status, uni1_generation_error(self->g), &extra);
    }
    Py_DECREF(job);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    self->error = value;
    return value;
}

/* An upload: the asset ids of the uploads, in order. */
static PyObject *uploaded_ids(GenerationObject *self)
{
    PyObject *list = PyList_New(0);
    const char *id;
    for (size_t i = 0; list && (id = uni1_generation_input_asset(self->g, i)); i++) {
        PyObject *s = PyUnicode_FromString(id);
        if (!s || PyList_Append(list, s) < 0)
            Py_CLEAR(list);
        Py_XDECREF(s);
    }
    return list;
}

static PyObject *build_result(GenerationObject *self)
{
    if (self->mode == UNI1_GEN_UPLOAD)
        return uploaded_ids(self);
    if (self->mode == UNI1_GEN_ESTIMATE)
        return PyFloat_FromDouble(uni1_generation_cost(self->g));
    if (!self->fetch)
        return get_job(self);
    size_t n = uni1_generation_n_outputs(self->g);
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (!list)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const uni1_gen_output *o = uni1_generation_output(self->g, i);
        PyObject *item;
        if (self->to_files) {
            item = py_path(self->st, o->path);
        } else {
            item = py_image_fields(&o->asset, &o->data, o->content_type);
        }
        if (!item) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SetItem(list, (Py_ssize_t)i, item);
    }
    return list;
}

/* Between slices of a wait: Ctrl-C (a signal handler that raised) stops it. */
static int signal_tick(void *userdata)
{
    (void)userdata;
    return PyErr_CheckSignals() < 0;
}

/* Blocks until done or the deadline (0: none). 0 done, 1 timed out, -1 an
 * exception (a signal handler raised). */
static int wait_tasks(uni1_task *const *tasks, size_t n, double deadline)
{
    int i = py_wait(tasks, n, deadline, signal_tick, NULL);
    return i >= 0 ? 0 : i == PY_WAIT_DEADLINE ? 1 : -1;
}

/* ---- methods --------------------------------------------------------------- */

static PyObject *gen_result(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                            PyObject *kwnames)
{
    (void)cls;
    GenerationObject *self = (GenerationObject *)op;
    static const char *const names[] = {"timeout", NULL};
    static const py_argspec spec = {"result", names, 1, 0};
    PyObject *a[1];
    double deadline;
    if (py_parse_args(&spec, args, (Py_ssize_t)nargs, kwnames, a) < 0 ||
        py_deadline(self->st, a[0], &deadline) < 0)
        return NULL;
    uni1_task *t = uni1_generation_task(self->g);
    if (!uni1_task_done(t)) {
        int r = wait_tasks(&t, 1, deadline);
        if (r < 0)
            return NULL;
        if (r > 0) {
            PyErr_SetString(self->st->TimeoutError,
                            "the generation did not finish before the deadline (it goes on; "
                            "cancel() stops it)");
            return NULL;
        }
    }
    PyObject *err = get_error(self);
    if (err) {
        PyErr_SetObject((PyObject *)Py_TYPE(err), err);
        return NULL;
    }
    if (PyErr_Occurred())
        return NULL;
    if (!self->result) {
        self->result = build_result(self);
        if (!self->result)
            return NULL;
    }
    if (PyList_Check(self->result))
        return PyList_GetSlice(self->result, 0, PyList_Size(self->result));
    return Py_NewRef(self->result);
}

static PyObject *gen_cancel(PyObject *op, PyObject *unused)
{
    (void)unused;
    GenerationObject *self = (GenerationObject *)op;
    return PyBool_FromLong(uni1_generation_cancel(self->g));
}

static PyObject *gen_add_done_callback(PyObject *op, PyObject *fn)
{
    GenerationObject *self = (GenerationObject *)op;
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "add_done_callback: fn must be callable");
        return NULL;
    }
    /* Under the GIL: the engine's end event takes the list under the GIL
     * too, so a callback is either in the list it takes or called here. */
    if (self->keepalive) {
        if (!self->callbacks && !(self->callbacks = PyList_New(0)))
            return NULL;
        if (PyList_Append(self->callbacks, fn) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(fn, op, NULL);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyObject *gen_get_stage(PyObject *op, void *closure)
{
    (void)closure;
    GenerationObject *self = (GenerationObject *)op;
    uni1_gen_snapshot snap;
    uni1_generation_snapshot(self->g, &snap);
    if (snap.stage == UNI1_GEN_WAITING && snap.job_status[0])
        return PyUnicode_FromString(snap.job_status);
    return PyUnicode_FromString(stage_names[snap.stage]);
}

static PyObject *gen_get_progress(PyObject *op, void *closure)
{
    (void)closure;
    GenerationObject *self = (GenerationObject *)op;
    uni1_gen_snapshot snap;
    uni1_generation_snapshot(self->g, &snap);
    return PyFloat_FromDouble(snap.progress);
}

static PyObject *gen_get_done(PyObject *op, void *closure)
{
    (void)closure;
    return PyBool_FromLong(is_done((GenerationObject *)op));
}

static PyObject *gen_get_job(PyObject *op, void *closure)
{
    (void)closure;
    return get_job((GenerationObject *)op);
}

static PyObject *gen_get_error(PyObject *op, void *closure)
{
    (void)closure;
    GenerationObject *self = (GenerationObject *)op;
    if (!is_done(self))
        Py_RETURN_NONE;
    PyObject *e = get_error(self);
    if (!e && PyErr_Occurred())
        return NULL;
    return Py_NewRef(e ? e : (PyObject *)Py_None);
}

static PyObject *gen_get_client(PyObject *op, void *closure)
{
    (void)closure;
    return Py_NewRef((PyObject *)((GenerationObject *)op)->client);
}

static PyObject *gen_repr(PyObject *op)
{
    GenerationObject *self = (GenerationObject *)op;
    uni1_gen_snapshot snap;
    uni1_generation_snapshot(self->g, &snap);
    const char *stage = snap.stage == UNI1_GEN_WAITING && snap.job_status[0]
                            ? snap.job_status
                            : stage_names[snap.stage];
    if (snap.job_id[0])
        return PyUnicode_FromFormat("<scenario_uni1.Generation job=%s stage=%s>", snap.job_id,
                                    stage);
    return PyUnicode_FromFormat("<scenario_uni1.Generation stage=%s>", stage);
}

static int gen_traverse(PyObject *op, visitproc visit, void *arg)
{
    GenerationObject *self = (GenerationObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->client);
    Py_VISIT(self->callbacks);
    Py_VISIT(self->on_submitted);
    Py_VISIT(self->on_ready);
    Py_VISIT(self->job);
    Py_VISIT(self->result);
    Py_VISIT(self->error);
    /* keepalive is not visited: it is a reference the engine holds, not a
     * cycle the collector may break. */
    return 0;
}

static int gen_clear(PyObject *op)
{
    GenerationObject *self = (GenerationObject *)op;
    Py_CLEAR(self->callbacks);
    Py_CLEAR(self->on_submitted);
    Py_CLEAR(self->on_ready);
    Py_CLEAR(self->job);
    Py_CLEAR(self->result);
    Py_CLEAR(self->error);
    return 0;
}

static void gen_dealloc(PyObject *op)
{
    GenerationObject *self = (GenerationObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (self->weakrefs)
        PyObject_ClearWeakRefs(op);
    gen_clear(op);
    if (self->g)
        uni1_generation_free(self->g);
    Py_CLEAR(self->client);
    PyObject_GC_Del(op);
    Py_DECREF(tp);
}

static PyMethodDef gen_methods[] = {
    {"result", (PyCFunction)(void (*)(void))gen_result, METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "result($self, timeout=None)\n--\n\n"
     "The paths (download=) or images, once done; raises the failure. Blocks with the GIL "
     "released; Ctrl-C works."},
    {"cancel", gen_cancel, METH_NOARGS,
     "cancel($self, /)\n--\n\nStops the pipeline (a running job is cancelled on the server). "
     "False when it had already ended."},
    {"add_done_callback", gen_add_done_callback, METH_O,
     "add_done_callback($self, fn, /)\n--\n\nfn(gen) once done, on the client's engine thread "
     "(at once here when already done)."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef gen_getset[] = {
    {"stage", gen_get_stage, NULL,
     "'pending', 'uploading', 'submitting', the job's status, 'downloading', then 'done', "
     "'failed' or 'canceled'.",
     NULL},
    {"progress", gen_get_progress, NULL, "0..1: the job's progress, then the download's.", NULL},
    {"done", gen_get_done, NULL, "Whether the pipeline ended (well or not).", NULL},
    {"job", gen_get_job, NULL, "The Job once submitted, else None.", NULL},
    {"error", gen_get_error, NULL, "The exception it ended with, or None.", NULL},
    {"client", gen_get_client, NULL, "The client whose engine runs it.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMemberDef gen_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(GenerationObject, weakrefs), READONLY, NULL},
    {NULL, 0, 0, 0, NULL}};

static PyType_Slot gen_slots[] = {
    {Py_tp_doc, "A generation running on the client's engine (made by Client.submit)."},
    {Py_tp_dealloc, gen_dealloc},
    {Py_tp_traverse, gen_traverse},
    {Py_tp_clear, gen_clear},
    {Py_tp_repr, gen_repr},
    {Py_tp_methods, gen_methods},
    {Py_tp_getset, gen_getset},
    {Py_tp_members, gen_members},
    {0, NULL}};

PyType_Spec py_generation_spec = {
    .name = "scenario_uni1._core.Generation",
    .basicsize = sizeof(GenerationObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = gen_slots,
};

PyObject *py_generation_new(py_state *st, ClientObject *client, const uni1_gen_spec *gs, int fetch,
                            int to_files, PyObject *attach, PyObject *on_submitted,
                            PyObject *on_ready)
{
    GenerationObject *self = PyObject_GC_New(GenerationObject, st->generation_type);
    if (!self)
        return NULL;
    self->g = NULL;
    self->st = st;
    self->client = (ClientObject *)Py_NewRef((PyObject *)client);
    self->callbacks = NULL;
    self->on_submitted = on_submitted && on_submitted != Py_None ? Py_NewRef(on_submitted) : NULL;
    self->on_ready = on_ready && on_ready != Py_None ? Py_NewRef(on_ready) : NULL;
    self->job = attach ? Py_NewRef(attach) : NULL;
    self->result = self->error = self->weakrefs = NULL;
    self->fetch = fetch;
    self->to_files = to_files;
    self->mode = gs->mode;
    self->job_final = 0;
    self->keepalive = Py_NewRef((PyObject *)self);
    PyObject_GC_Track((PyObject *)self);
    uni1_status status;
    char err[256];
    self->g = uni1_generation_start(client->core, gs, on_event, self, &status, err, sizeof err);
    if (!self->g) {
        Py_CLEAR(self->keepalive);
        if (status == UNI1_ERR_INVALID)
            PyErr_SetString(st->InvalidRequestError, err);
        else
            PyErr_NoMemory();
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

PyObject *py_client_engine_fd(PyObject *op, PyObject *unused)
{
    (void)unused;
    ClientObject *client = (ClientObject *)op;
    if (!client->core || client->closed) {
        PyErr_SetString(PyExc_ValueError, "client is closed");
        return NULL;
    }
    int fd = uni1_engine_fd(client->core);
    if (fd < 0)
        return PyErr_NoMemory();
    return PyLong_FromLong(fd);
}

PyObject *py_client_engine_drain(PyObject *op, PyObject *unused)
{
    (void)unused;
    ClientObject *client = (ClientObject *)op;
    if (client->core && !client->closed)
        uni1_engine_drain(client->core);
    Py_RETURN_NONE;
}

PyObject *py_wait_first(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames)
{
    py_state *st = PyModule_GetState(module);
    static const char *const names[] = {"gens", "timeout", NULL};
    static const py_argspec spec = {"wait_first", names, 2, 1};
    PyObject *a[2];
    double deadline;
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0 || py_deadline(st, a[1], &deadline) < 0)
        return NULL;
    PyObject *seq = PySequence_Tuple(a[0]);
    if (!seq)
        return NULL;
    Py_ssize_t n = PyTuple_Size(seq);
    uni1_task **tasks = calloc(n ? (size_t)n : 1, sizeof *tasks);
    if (!tasks) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyTuple_GetItem(seq, i);
        if (!PyObject_TypeCheck(o, st->generation_type)) {
            PyErr_SetString(PyExc_TypeError, "wait_first: every item must be a Generation");
            free(tasks);
            Py_DECREF(seq);
            return NULL;
        }
        tasks[i] = uni1_generation_task(((GenerationObject *)o)->g);
    }
    /* The sequence keeps the generations (and so the tasks) alive. */
    int r = n ? wait_tasks(tasks, (size_t)n, deadline) : 0;
    free(tasks);
    Py_DECREF(seq);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r == 0);
}

PyObject *py_release_spare_buffers(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    uni1_release_spare_buffers();
    Py_RETURN_NONE;
}
