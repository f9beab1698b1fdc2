/* Client._start: the arguments of a generation, checked and copied into a
 * core spec (uni1_gen_spec), then handed to the engine (generation.c). */
#include <stdlib.h>
#include <string.h>

#include "binding.h"

/* ---- Client._start and friends ---------------------------------------------- */

typedef struct start_args {
    uni1_gen_input *inputs;
    size_t n_inputs, cap_inputs;
    int *refs;
    size_t n_refs;
    int source;
    char **strings; /* everything malloc'd for the spec */
    size_t n_strings, cap_strings;
    PyObject *keep; /* bytes objects whose buffers inputs point into */
} start_args;

static char *keep_string(start_args *sa, char *s)
{
    if (!s)
        return NULL;
    if (sa->n_strings == sa->cap_strings) {
        size_t cap = sa->cap_strings ? 2 * sa->cap_strings : 16;
        char **p = realloc(sa->strings, cap * sizeof *p);
        if (!p) {
            free(s);
            PyErr_NoMemory();
            return NULL;
        }
        sa->strings = p;
        sa->cap_strings = cap;
    }
    sa->strings[sa->n_strings++] = s;
    return s;
}

static void start_args_free(start_args *sa)
{
    for (size_t i = 0; i < sa->n_strings; i++)
        free(sa->strings[i]);
    free(sa->strings);
    free(sa->inputs);
    free(sa->refs);
    Py_XDECREF(sa->keep);
}

static uni1_gen_input *new_input(start_args *sa)
{
    if (sa->n_inputs == sa->cap_inputs) {
        size_t cap = sa->cap_inputs ? 2 * sa->cap_inputs : 8;
        uni1_gen_input *p = realloc(sa->inputs, cap * sizeof *p);
        if (!p) {
            PyErr_NoMemory();
            return NULL;
        }
        sa->inputs = p;
        sa->cap_inputs = cap;
    }
    uni1_gen_input *in = &sa->inputs[sa->n_inputs++];
    memset(in, 0, sizeof *in);
    return in;
}

/* uploads: (data: bytes | None, path | None, name, mime_type) each. */
static int parse_uploads(py_state *st, start_args *sa, PyObject *uploads)
{
    if (!uploads || uploads == Py_None)
        return 0;
    PyObject *seq = PySequence_Tuple(uploads);
    if (!seq)
        return -1;
    int rc = 0;
    for (Py_ssize_t i = 0; i < PyTuple_Size(seq) && rc == 0; i++) {
        PyObject *t = PyTuple_GetItem(seq, i);
        if (!PyTuple_Check(t) || PyTuple_Size(t) != 4) {
            PyErr_Format(st->InvalidRequestTypeError,
                         "uploads[%zd] must be a (data, path, name, mime_type) tuple", i);
            rc = -1;
            break;
        }
        uni1_gen_input *in = new_input(sa);
        if (!in) {
            rc = -1;
            break;
        }
        PyObject *data = PyTuple_GetItem(t, 0), *path = PyTuple_GetItem(t, 1);
        char *name = NULL, *mime = NULL;
        if (py_copy_str(st, PyTuple_GetItem(t, 2), "upload name", 0, &name) < 0 ||
            !keep_string(sa, name) ||
            py_copy_str(st, PyTuple_GetItem(t, 3), "upload mime_type", 0, &mime) < 0 ||
            !keep_string(sa, mime)) {
            rc = -1;
            break;
        }
        in->name = name;
        in->mime_type = mime;
        if (data != Py_None) {
            char *buf;
            Py_ssize_t len;
            if (!PyBytes_Check(data) || PyBytes_AsStringAndSize(data, &buf, &len) < 0) {
                PyErr_Format(st->InvalidRequestTypeError, "uploads[%zd]: data must be bytes", i);
                rc = -1;
                break;
            }
            if (PyList_Append(sa->keep, data) < 0) {
                rc = -1;
                break;
            }
            in->data = (const unsigned char *)buf;
            in->len = (size_t)len;
        } else {
            PyObject *fs = NULL;
            if (py_arg_path(st, PY_ARG_CALL, path, "upload path", &fs) < 0) {
                rc = -1;
                break;
            }
            char *p = strdup(PyBytes_AsString(fs));
            Py_DECREF(fs);
            if (!keep_string(sa, p)) {
                rc = -1;
                break;
            }
            in->path = p;
        }
    }
    Py_DECREF(seq);
    return rc;
}

/* One reference (source or an image_refs entry): an asset id (str) becomes
 * an input of its own; an int picks an upload. The placeholder stands for
 * it in the validation of the request. */
static int parse_ref(py_state *st, start_args *sa, size_t n_uploads, PyObject *o, const char *what,
                     int *index, PyObject **placeholder)
{
    if (PyLong_Check(o) && !PyBool_Check(o)) {
        long i = PyLong_AsLong(o);
        if (i < 0 || (size_t)i >= n_uploads) {
            if (!PyErr_Occurred())
                PyErr_Format(st->InvalidRequestError, "%s: no upload %ld", what, i);
            return -1;
        }
        *index = (int)i;
        *placeholder = PyUnicode_FromFormat("asset_placeholder%ld", i);
        return *placeholder ? 0 : -1;
    }
    char *id = NULL;
    if (py_copy_str(st, o, what, 0, &id) < 0 || !keep_string(sa, id))
        return -1;
    uni1_gen_input *in = new_input(sa);
    if (!in)
        return -1;
    in->asset_id = id;
    *index = (int)(sa->n_inputs - 1);
    *placeholder = Py_NewRef(o);
    return 0;
}

static int parse_exclude(py_state *st, start_args *sa, PyObject *o, const char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!o || o == Py_None)
        return 0;
    PyObject *seq = PySequence_Tuple(o);
    if (!seq)
        return -1;
    Py_ssize_t len = PyTuple_Size(seq);
    const char **ids = calloc(len ? (size_t)len : 1, sizeof *ids);
    if (!ids) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        char *id = NULL;
        if (py_copy_str(st, PyTuple_GetItem(seq, i), "exclude", 0, &id) < 0 ||
            !keep_string(sa, id)) {
            free(ids);
            Py_DECREF(seq);
            return -1;
        }
        ids[i] = id;
    }
    Py_DECREF(seq);
    *out = ids;
    *n = (size_t)len;
    return 0;
}

PyObject *py_client_start(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                          PyObject *kwnames)
{
    py_state *st = PyType_GetModuleState(cls);
    ClientObject *client = (ClientObject *)op;
    static const char *const names[] = {
        "prompt",     "source",   "image_refs",   "aspect_ratio", "output_format", "web_search",
        "uploads",    "download", "overwrite",    "timeout",      "job",           "fetch",
        "sent_after", "exclude",  "on_submitted", "mode",         "on_ready",      NULL};
    static const py_argspec spec = {"_start", names, 6, 0};
    PyObject *a[17];
    if (py_parse_args(&spec, args, (Py_ssize_t)nargs, kwnames, a) < 0)
        return NULL;
    if (py_client_check_open(st, client) < 0)
        return NULL;
    uni1_gen_mode mode = UNI1_GEN_RUN;
    if (a[15] && a[15] != Py_None) {
        const char *m = PyUnicode_Check(a[15]) ? PyUnicode_AsUTF8AndSize(a[15], NULL) : NULL;
        if (m && strcmp(m, "upload") == 0)
            mode = UNI1_GEN_UPLOAD;
        else if (m && strcmp(m, "estimate") == 0)
            mode = UNI1_GEN_ESTIMATE;
        else if (!m || strcmp(m, "generate") != 0) {
            PyErr_Clear();
            PyErr_SetString(st->InvalidRequestError,
                            "mode must be 'generate', 'upload' or 'estimate'");
            return NULL;
        }
    }
    start_args sa;
    memset(&sa, 0, sizeof sa);
    sa.source = -1;
    sa.keep = PyList_New(0);
    PyObject *result = NULL, *src_ph = NULL, *refs_ph = NULL, *dir = NULL;
    const char **exclude = NULL;
    size_t n_exclude = 0;
    py_gen_args ga;
    int ga_ready = 0;
    uni1_gen_spec gs;
    memset(&gs, 0, sizeof gs);
    if (!sa.keep || parse_uploads(st, &sa, a[6]) < 0)
        goto out;
    size_t n_uploads = sa.n_inputs;
    JobObject *attach = NULL;
    if (a[10] && a[10] != Py_None) {
        if (!PyObject_TypeCheck(a[10], st->job_type)) {
            PyErr_SetString(st->InvalidRequestTypeError, "job must be a Job");
            goto out;
        }
        attach = (JobObject *)a[10];
    }
    if (mode == UNI1_GEN_UPLOAD) {
        /* Only the uploads: no request to check. */
    } else if (!attach) {
        if (a[1] && a[1] != Py_None &&
            parse_ref(st, &sa, n_uploads, a[1], "source", &sa.source, &src_ph) < 0)
            goto out;
        if (a[2] && a[2] != Py_None) {
            PyObject *seq = PySequence_Tuple(a[2]);
            if (!seq)
                goto out;
            Py_ssize_t n = PyTuple_Size(seq);
            sa.refs = calloc(n ? (size_t)n : 1, sizeof *sa.refs);
            refs_ph = PyList_New(n);
            for (Py_ssize_t i = 0; sa.refs && refs_ph && i < n; i++) {
                PyObject *ph = NULL;
                if (parse_ref(st, &sa, n_uploads, PyTuple_GetItem(seq, i), "image_refs",
                              &sa.refs[i], &ph) < 0) {
                    Py_DECREF(seq);
                    goto out;
                }
                PyList_SetItem(refs_ph, i, ph);
                sa.n_refs++;
            }
            Py_DECREF(seq);
            if (!sa.refs || !refs_ph) {
                if (!PyErr_Occurred())
                    PyErr_NoMemory();
                goto out;
            }
        }
        /* An invalid request never reaches the engine. */
        if (py_gen_args_init(st, &ga, a[0], src_ph, refs_ph, a[3], a[4], a[5]) < 0)
            goto out;
        ga_ready = 1;
        if (py_gen_args_validate(st, &ga) < 0)
            goto out;
        gs.prompt = ga.params.prompt;
        gs.aspect_ratio = ga.params.aspect_ratio;
        gs.output_format = ga.params.output_format;
        gs.web_search = ga.params.web_search;
    } else {
        if (py_job_client(st, attach) == NULL)
            goto out;
        gs.job_id = attach->job.id;
    }
    int overwrite = 0, fetch = 1;
    double deadline = 0, sent_after = 0;
    if (py_arg_flag(st, PY_ARG_CALL, a[8], "overwrite", &overwrite) < 0 ||
        py_arg_flag(st, PY_ARG_CALL, a[11], "fetch", &fetch) < 0 ||
        py_deadline(st, a[9], &deadline) < 0)
        goto out;
    if (a[12] && a[12] != Py_None) {
        sent_after = PyFloat_AsDouble(a[12]);
        if (sent_after == -1 && PyErr_Occurred())
            goto out;
    }
    if (a[7] && a[7] != Py_None && py_arg_path(st, PY_ARG_CALL, a[7], "download", &dir) < 0)
        goto out;
    if (parse_exclude(st, &sa, a[13], &exclude, &n_exclude) < 0)
        goto out;
    if ((a[14] && a[14] != Py_None && !PyCallable_Check(a[14])) ||
        (a[16] && a[16] != Py_None && !PyCallable_Check(a[16]))) {
        PyErr_SetString(PyExc_TypeError, "on_submitted and on_ready must be callable");
        goto out;
    }
    char fallback[16] = "";
    if (attach)
        py_job_fallback_ext(attach, st, fallback, sizeof fallback);
    gs.source = sa.source;
    gs.image_refs = sa.refs;
    gs.n_image_refs = sa.n_refs;
    gs.inputs = sa.inputs;
    gs.n_inputs = sa.n_inputs;
    gs.fetch = fetch;
    gs.download_dir = dir ? PyBytes_AsString(dir) : NULL;
    gs.overwrite = overwrite;
    gs.sent_after = sent_after;
    gs.exclude = exclude;
    gs.n_exclude = n_exclude;
    gs.fallback_ext = fallback[0] ? fallback : NULL;
    gs.deadline = deadline;

    gs.mode = mode;
    result = py_generation_new(st, client, &gs, mode == UNI1_GEN_RUN ? fetch : 0, dir != NULL,
                               (PyObject *)attach, a[14], a[16]);
out:
    if (ga_ready)
        py_gen_args_free(&ga);
    free(exclude);
    Py_XDECREF(src_ph);
    Py_XDECREF(refs_ph);
    Py_XDECREF(dir);
    start_args_free(&sa);
    return result;
}
