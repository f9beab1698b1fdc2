/* The Client type: settings plus a pool of core sessions. Final:
 * scenario_uni1.Client (Python) holds one, after resolving credentials from
 * the environment. */
#include <stdlib.h>
#include <string.h>

#include "binding.h"

#define PY_METHOD_FLAGS (METH_METHOD | METH_FASTCALL | METH_KEYWORDS)
#define PY_CMETHOD(f) ((PyCFunction)(void (*)(void))(f))

void py_client_free_core(ClientObject *self)
{
    uni1_client *core = self->core;
    self->core = NULL;
    if (!core)
        return;
    /* Closing pooled connections may take a moment (TLS close_notify). */
    Py_BEGIN_ALLOW_THREADS uni1_client_free(core);
    Py_END_ALLOW_THREADS
}

int py_client_check_open(py_state *st, ClientObject *client)
{
    /* The closed flag, not the core pointer: after close() the core lives on
     * until the last call in flight ends, and must take no new call. */
    if (client->closed) {
        PyErr_SetString(st->ConfigurationError, "client is closed");
        return -1;
    }
    if (!client->core) {
        PyErr_SetString(st->ConfigurationError, "Client.__init__() was not called");
        return -1;
    }
    return 0;
}

/* Whether logging.getLogger("scenario_uni1") wants DEBUG. Never imports
 * logging: when no one imported it, there is no handler to log to. */
static PyObject *find_debug_logger(void)
{
    PyObject *name = PyUnicode_FromString("logging");
    if (!name)
        return NULL;
    PyObject *logging = PyImport_GetModule(name);
    Py_DECREF(name);
    if (!logging) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *logger = PyObject_CallMethod(logging, "getLogger", "s", "scenario_uni1");
    Py_DECREF(logging);
    if (!logger) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *on = PyObject_CallMethod(logger, "isEnabledFor", "i", (int)UNI1_LOG_DEBUG);
    int enabled = on ? PyObject_IsTrue(on) : -1;
    Py_XDECREF(on);
    if (enabled != 1) {
        PyErr_Clear();
        Py_DECREF(logger);
        return NULL;
    }
    return logger;
}

static int client_init_impl(ClientObject *self, py_state *st, PyObject *args, PyObject *kwds)
{
    if (self->core || self->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Client.__init__() may only be called once");
        return -1;
    }
    py_settings cfg;
    if (py_settings_init(st, &cfg, args, kwds) < 0)
        return -1;
    uni1_options o = cfg.options;
    if (!o.api_key && !o.api_secret && !o.bearer_token) {
        py_settings_free(&cfg);
        PyErr_SetString(st->ConfigurationError,
                        "no credentials: pass api_key and api_secret or set "
                        "SCENARIO_SDK_API_KEY/SCENARIO_SDK_API_SECRET");
        return -1;
    }
    PyObject *logger = find_debug_logger();
    if (logger) {
        o.log = py_log_forward;
        o.log_userdata = self;
    }
    char err[256] = "";
    /* Quick and local (the core copies the strings; no I/O): the GIL stays
     * held. */
    uni1_client *core;
    uni1_status rc = uni1_client_create(&o, &core, err, sizeof err);
    py_settings_free(&cfg);
    if (rc != UNI1_OK) {
        Py_XDECREF(logger);
        PyObject *msg = PyUnicode_DecodeUTF8(err, (Py_ssize_t)strlen(err), "replace");
        if (msg) {
            PyErr_SetObject(rc == UNI1_ERR_NOMEM ? PyExc_MemoryError : st->ConfigurationError, msg);
            Py_DECREF(msg);
        }
        return -1;
    }
    PyObject *url = PyUnicode_FromString(uni1_client_base_url(core));
    const char *pid = uni1_client_project_id(core);
    PyObject *pid_obj = pid ? PyUnicode_FromString(pid) : Py_NewRef(Py_None);
    if (!url || !pid_obj) {
        Py_XDECREF(url);
        Py_XDECREF(pid_obj);
        Py_XDECREF(logger);
        uni1_client_free(core);
        return -1;
    }
    self->core = core;
    self->timeout = o.request_timeout;
    self->max_retries = o.max_retries;
    self->base_url = url;
    self->project_id = pid_obj;
    self->logger = logger;
    return 0;
}

static int client_init(PyObject *op, PyObject *args, PyObject *kwds)
{
    py_state *st = PyType_GetModuleState(Py_TYPE(op));
    if (!st)
        return -1;
    return client_init_impl((ClientObject *)op, st, args, kwds);
}

static int client_traverse(PyObject *op, visitproc visit, void *arg)
{
    ClientObject *self = (ClientObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->logger);
    return 0;
}

static int client_clear(PyObject *op)
{
    ClientObject *self = (ClientObject *)op;
    Py_CLEAR(self->logger);
    return 0;
}

static void client_dealloc(PyObject *op)
{
    ClientObject *self = (ClientObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    /* No call can be in flight: each one holds a reference. */
    if (self->core) {
        uni1_client *core = self->core;
        self->core = NULL;
        uni1_client_free(core);
    }
    client_clear(op);
    Py_CLEAR(self->base_url);
    Py_CLEAR(self->project_id);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(op);
    Py_DECREF(tp);
}

static PyObject *client_repr(PyObject *op)
{
    ClientObject *self = (ClientObject *)op;
    PyObject *tp = (PyObject *)Py_TYPE(op);
    PyObject *mod = PyObject_GetAttrString(tp, "__module__");
    PyObject *name = mod ? PyObject_GetAttrString(tp, "__qualname__") : NULL;
    PyObject *r = NULL;
    if (name) {
        /* Never the credentials: only the URL and the project. */
        r = PyUnicode_FromFormat("<%U.%U base_url=%R project_id=%R%s>", mod, name,
                                 self->base_url ? self->base_url : Py_None,
                                 self->project_id ? self->project_id : Py_None,
                                 self->closed ? " closed" : "");
    }
    Py_XDECREF(mod);
    Py_XDECREF(name);
    return r;
}

/* ---- properties ---------------------------------------------------------- */

static PyObject *get_base_url(PyObject *op, void *closure)
{
    (void)closure;
    ClientObject *self = (ClientObject *)op;
    return Py_NewRef(self->base_url ? self->base_url : Py_None);
}

static PyObject *get_project_id(PyObject *op, void *closure)
{
    (void)closure;
    ClientObject *self = (ClientObject *)op;
    return Py_NewRef(self->project_id ? self->project_id : Py_None);
}

static PyObject *get_timeout(PyObject *op, void *closure)
{
    (void)closure;
    return PyFloat_FromDouble(((ClientObject *)op)->timeout);
}

static PyObject *get_max_retries(PyObject *op, void *closure)
{
    (void)closure;
    return PyLong_FromLong(((ClientObject *)op)->max_retries);
}

static PyObject *get_closed(PyObject *op, void *closure)
{
    (void)closure;
    ClientObject *self = (ClientObject *)op;
    return PyBool_FromLong(self->closed || !self->core);
}

static PyObject *get_request_count(PyObject *op, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(((ClientObject *)op)->requests);
}

static PyGetSetDef client_getset[] = {
    {"base_url", get_base_url, NULL, "The API root, normalised (ends with the version).", NULL},
    {"project_id", get_project_id, NULL, "The project sent with every request, or None.", NULL},
    {"timeout", get_timeout, NULL, "Seconds allowed for one API request.", NULL},
    {"max_retries", get_max_retries, NULL, "Retries of reads after transient failures.", NULL},
    {"closed", get_closed, NULL, "Whether close() was called.", NULL},
    {"request_count", get_request_count, NULL,
     "HTTP requests this client has sent, retries included (counted when each call ends).", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

/* ---- methods -------------------------------------------------------------- */

static const char *const submit_names[] = {"prompt",       "source",        "image_refs",
                                           "aspect_ratio", "output_format", "web_search",
                                           "timeout",      "exclude",       NULL};

/* A sequence of job ids as a NULL-terminated array of malloc'd copies (the
 * core reads them with the GIL released); NULL with an exception set. */
static char **copy_ids(py_state *st, PyObject *seq, const char *what, size_t *n)
{
    PyObject *t = seq ? PySequence_Tuple(seq) : PyTuple_New(0);
    if (!t)
        return NULL;
    Py_ssize_t count = PyTuple_Size(t);
    char **ids = calloc((size_t)count + 1, sizeof *ids);
    int ok = ids != NULL;
    if (!ok)
        PyErr_NoMemory();
    for (Py_ssize_t i = 0; ok && i < count; i++)
        ok = py_copy_str(st, PyTuple_GetItem(t, i), what, 0, &ids[i]) == 0;
    Py_DECREF(t);
    if (!ok) {
        for (Py_ssize_t i = 0; ids && i < count; i++)
            free(ids[i]);
        free(ids);
        return NULL;
    }
    *n = (size_t)count;
    return ids;
}

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; ids && i < n; i++)
        free(ids[i]);
    free(ids);
}

static PyObject *client_submit(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                               PyObject *kwnames)
{
    py_state *st = PyType_GetModuleState(cls);
    ClientObject *self = (ClientObject *)op;
    static const py_argspec spec = {"_submit", submit_names, 6, 1};
    PyObject *a[8];
    if (py_parse_args(&spec, args, (Py_ssize_t)nargs, kwnames, a) < 0)
        return NULL;
    double deadline;
    if (py_deadline(st, a[6], &deadline) < 0)
        return NULL;
    size_t n_ex = 0;
    char **ex = copy_ids(st, a[7], "exclude", &n_ex);
    if (!ex)
        return NULL;
    py_gen_args g;
    if (py_gen_args_init(st, &g, a[0], a[1], a[2], a[3], a[4], a[5]) < 0) {
        free_ids(ex, n_ex);
        return NULL;
    }
    /* An invalid request never reaches the network. */
    if (py_gen_args_validate(st, &g) < 0) {
        py_gen_args_free(&g);
        free_ids(ex, n_ex);
        return NULL;
    }
    py_call c;
    if (py_call_begin(&c, st, self, deadline) < 0) {
        py_gen_args_free(&g);
        free_ids(ex, n_ex);
        return NULL;
    }
    uni1_job job;
    double cost = -1;
    uni1_status rc = py_run_generate(&c, &g.params, (const char *const *)ex, n_ex, &job, &cost);
    free_ids(ex, n_ex);
    PyObject *result;
    if (rc != UNI1_OK) {
        result = py_call_fail(&c, rc, NULL, &g.params);
        uni1_job_clear(&job);
    } else if (PyErr_Occurred()) {
        /* A Ctrl-C caught by the last check wins (pycurl's rule), even though
         * the job exists; client.list_jobs() finds it. */
        result = NULL;
        uni1_job_clear(&job);
    } else {
        result = py_job_new(st, self, &job, cost);
    }
    py_call_finish(&c);
    py_gen_args_free(&g);
    return result;
}

static const char *const find_names[] = {
    "prompt",     "source",  "image_refs", "aspect_ratio", "output_format",
    "web_search", "sent_at", "exclude",    "timeout",      NULL};

/* _find_job(...): the job an earlier, interrupted submission of this request
 * created, or None (the core's reconciliation, for the journal). */
static PyObject *client_find_job(PyObject *op, PyTypeObject *cls, PyObject *const *args,
                                 size_t nargs, PyObject *kwnames)
{
    py_state *st = PyType_GetModuleState(cls);
    ClientObject *self = (ClientObject *)op;
    static const py_argspec spec = {"_find_job", find_names, 6, 1};
    PyObject *a[9];
    if (py_parse_args(&spec, args, (Py_ssize_t)nargs, kwnames, a) < 0)
        return NULL;
    if (!a[6]) {
        PyErr_SetString(PyExc_TypeError, "_find_job() needs sent_at");
        return NULL;
    }
    double sent_at = PyFloat_AsDouble(a[6]);
    if (sent_at == -1.0 && PyErr_Occurred())
        return NULL;
    double deadline;
    if (py_deadline(st, a[8], &deadline) < 0)
        return NULL;
    size_t n_ex = 0;
    char **ex = copy_ids(st, a[7], "exclude", &n_ex);
    if (!ex)
        return NULL;
    py_gen_args g;
    if (py_gen_args_init(st, &g, a[0], a[1], a[2], a[3], a[4], a[5]) < 0) {
        free_ids(ex, n_ex);
        return NULL;
    }
    PyObject *result = NULL;
    py_call c;
    if (py_gen_args_validate(st, &g) == 0 && py_call_begin(&c, st, self, deadline) == 0) {
        uni1_job job;
        int found = 0;
        uni1_status rc =
            py_run_find_job(&c, &g.params, sent_at, (const char *const *)ex, n_ex, &job, &found);
        if (rc != UNI1_OK || PyErr_Occurred()) {
            result = py_call_fail(&c, rc, NULL, NULL);
        } else if (!found) {
            result = Py_NewRef(Py_None);
        } else {
            result = py_job_new(st, self, &job, -1); /* takes ownership of job */
        }
        if (rc != UNI1_OK || !found)
            uni1_job_clear(&job);
        py_call_finish(&c);
    }
    py_gen_args_free(&g);
    free_ids(ex, n_ex);
    return result;
}

static PyObject *client_job(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                            PyObject *kwnames)
{
    py_state *st = PyType_GetModuleState(cls);
    ClientObject *self = (ClientObject *)op;
    static const char *const names[] = {"job_id", "timeout", NULL};
    static const py_argspec spec = {"job", names, 1, 1};
    PyObject *a[2];
    if (py_parse_args(&spec, args, (Py_ssize_t)nargs, kwnames, a) < 0)
        return NULL;
    double deadline;
    char *job_id;
    if (py_deadline(st, a[1], &deadline) < 0 || py_copy_str(st, a[0], "job_id", 0, &job_id) < 0)
        return NULL;
    py_call c;
    if (py_call_begin(&c, st, self, deadline) < 0) {
        free(job_id);
        return NULL;
    }
    uni1_job job;
    uni1_status rc = py_run_get_job(&c, job_id, &job);
    PyObject *result;
    if (rc != UNI1_OK || PyErr_Occurred()) {
        result = py_call_fail(&c, rc, NULL, NULL);
        uni1_job_clear(&job);
    } else {
        result = py_job_new(st, self, &job, -1);
    }
    py_call_finish(&c);
    free(job_id);
    return result;
}

static PyObject *client_list_jobs(PyObject *op, PyTypeObject *cls, PyObject *const *args,
                                  size_t nargs, PyObject *kwnames)
{
    py_state *st = PyType_GetModuleState(cls);
    ClientObject *self = (ClientObject *)op;
    static const char *const names[] = {"page_size", "pagination_token", "status",
                                        "type",      "timeout",          NULL};
    static const py_argspec spec = {"list_jobs", names, 0, 0};
    PyObject *a[5];
    if (py_parse_args(&spec, args, (Py_ssize_t)nargs, kwnames, a) < 0)
        return NULL;
    long page_size = 0;
    if (py_arg_count(st, PY_ARG_CALL, a[0], "page_size", PY_ALLOW_NONE, 0, 100000, &page_size) < 0)
        return NULL;
    double deadline;
    char *token = NULL, *status = NULL, *type = NULL;
    if (py_deadline(st, a[4], &deadline) < 0 ||
        py_copy_str(st, a[1], "pagination_token", 1, &token) < 0 ||
        py_copy_str(st, a[2], "status", 1, &status) < 0 ||
        py_copy_str(st, a[3], "type", 1, &type) < 0) {
        free(token);
        free(status);
        return NULL;
    }
    uni1_list_query q = {(int)page_size, token, status, type};
    PyObject *result = NULL;
    py_call c;
    if (py_call_begin(&c, st, self, deadline) < 0)
        goto done;
    uni1_job_list list;
    uni1_status rc = py_run_list_jobs(&c, &q, &list);
    if (rc != UNI1_OK || PyErr_Occurred()) {
        py_call_fail(&c, rc, NULL, NULL);
    } else {
        PyObject *jobs = PyList_New(0);
        for (size_t i = 0; jobs && i < list.n_jobs; i++) {
            const uni1_job *j = &list.jobs[i];
            PyObject *d = py_json_loads(st, j->raw_json, j->raw_json ? j->raw_len : 0);
            if (!d || PyList_Append(jobs, d) < 0)
                Py_CLEAR(jobs);
            Py_XDECREF(d);
        }
        if (jobs) {
            PyObject *next = py_str_or_none(list.next_token);
            if (next)
                result = PyTuple_Pack(2, jobs, next);
            Py_XDECREF(next);
            Py_DECREF(jobs);
        }
    }
    uni1_job_list_clear(&list);
    py_call_finish(&c);
done:
    free(token);
    free(status);
    free(type);
    return result;
}

static PyObject *client_close(PyObject *op, PyObject *unused)
{
    (void)unused;
    ClientObject *self = (ClientObject *)op;
    self->closed = 1;
    /* Calls in flight stop at their next interrupt check and the last one
     * to end frees the core (py_call_finish). */
    if (self->active == 0)
        py_client_free_core(self);
    Py_RETURN_NONE;
}

static PyObject *client_enter(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                              PyObject *kwnames)
{
    py_state *st = PyType_GetModuleState(cls);
    ClientObject *self = (ClientObject *)op;
    (void)args;
    if (nargs || (kwnames && PyTuple_Size(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "__enter__() takes no arguments");
        return NULL;
    }
    if (py_client_check_open(st, self) < 0)
        return NULL;
    return Py_NewRef(op);
}

static PyObject *client_exit(PyObject *op, PyObject *args)
{
    (void)args;
    return client_close(op, NULL);
}

static PyMethodDef client_methods[] = {
    {"_find_job", PY_CMETHOD(client_find_job), PY_METHOD_FLAGS,
     "_find_job($self, prompt, source=None, image_refs=(), aspect_ratio=None, output_format='png', "
     "web_search=False, *, sent_at, exclude=(), timeout=None)\n--\n\n"
     "The job an interrupted submission of this request created (sent at sent_at, Unix time), "
     "or None. Jobs in exclude are never picked."},
    {"_submit", PY_CMETHOD(client_submit), PY_METHOD_FLAGS,
     "_submit($self, prompt, source=None, image_refs=(), aspect_ratio=None, output_format='png', "
     "web_search=False, *, timeout=None, exclude=())\n--\n\n"
     "POST the generation (asset ids only; validated first). Returns a Job. After an "
     "uncertain attempt, jobs in exclude are never adopted."},
    {"_start", PY_CMETHOD(py_client_start), PY_METHOD_FLAGS,
     "_start($self, prompt, source=None, image_refs=(), aspect_ratio=None, output_format='png', "
     "web_search=False, *, uploads=(), download=None, overwrite=False, timeout=None, job=None, "
     "fetch=True, sent_after=None, exclude=(), on_submitted=None, mode='generate', "
     "on_ready=None)\n--\n\n"
     "Starts the whole pipeline (uploads, submit, wait, fetch) on the client's engine and "
     "returns a Generation at once. source and image_refs entries are asset ids or indexes "
     "into uploads ((data, path, name, mime_type) tuples)."},
    {"_engine_fd", py_client_engine_fd, METH_NOARGS,
     "_engine_fd($self, /)\n--\n\nA file descriptor readable once a generation ended since "
     "the last _engine_drain()."},
    {"_engine_drain", py_client_engine_drain, METH_NOARGS,
     "_engine_drain($self, /)\n--\n\nClears the readiness of _engine_fd()."},
    {"job", PY_CMETHOD(client_job), PY_METHOD_FLAGS,
     "job($self, job_id, *, timeout=None)\n--\n\nRe-attach to a job by id (one GET)."},
    {"list_jobs", PY_CMETHOD(client_list_jobs), PY_METHOD_FLAGS,
     "list_jobs($self, *, page_size=0, pagination_token=None, status=None, type=None, "
     "timeout=None)\n--\n\n"
     "One page of jobs: (list of job dicts, next pagination token or None)."},
    {"get_asset", PY_CMETHOD(py_client_get_asset), PY_METHOD_FLAGS,
     "get_asset($self, asset_id, *, timeout=None)\n--\n\nThe asset object as the server sent it."},
    {"close", client_close, METH_NOARGS,
     "close($self, /)\n--\n\nRelease connections. Later calls raise ConfigurationError; calls "
     "running "
     "in other threads stop."},
    {"__enter__", PY_CMETHOD(client_enter), PY_METHOD_FLAGS, NULL},
    {"__exit__", client_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyType_Slot client_slots[] = {
    {Py_tp_doc, "Client(api_key=None, api_secret=None, *, bearer_token=None, base_url=None, "
                "project_id=None, timeout=60.0, max_retries=3, user_agent=None, ca_bundle=None, "
                "proxy=None, connect_timeout=10.0, stall_timeout=None, backoff_base=0.5, "
                "backoff_max=20.0, settle_window=20.0, resend_uncertain=True, _ca_fallback=None)"
                "\n--\n\n"
                "Settings and a pool of connections; safe to share between threads.\n\n"
                "Credentials are not read from the environment here: scenario_uni1.Client "
                "(which holds one) resolves them."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, client_init},
    {Py_tp_dealloc, client_dealloc},
    {Py_tp_traverse, client_traverse},
    {Py_tp_clear, client_clear},
    {Py_tp_repr, client_repr},
    {Py_tp_methods, client_methods},
    {Py_tp_getset, client_getset},
    {0, NULL}};

PyType_Spec py_client_spec = {
    .name = "scenario_uni1._core.Client",
    .basicsize = sizeof(ClientObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = client_slots,
};
