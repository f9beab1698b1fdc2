/* Job.images() and Job.download(): the generated assets fetched into memory
 * (as raw fields: scenario_uni1.Job makes the Images) or streamed to files
 * (waiting first when the job is not done yet). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

/* ---- fetching the results ------------------------------------------------ */

/* Waits unless the job already succeeded; copies the asset ids. */
static int ready_assets(JobObject *self, py_state *st, double deadline, py_id **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (self->job.state != UNI1_JOB_SUCCESS && py_job_wait_impl(self, st, deadline, NULL) < 0)
        return -1;
    size_t count = self->job.n_assets;
    if (count == 0)
        return 0;
    *ids = malloc(count * sizeof **ids);
    if (!*ids) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < count; i++)
        snprintf((*ids)[i], sizeof(py_id), "%s", self->job.asset_ids[i]);
    *n = count;
    return 0;
}

PyObject *py_image_fields(const uni1_asset *asset, const uni1_buffer *buf, const char *content_type)
{
    char mime[64];
    const char *src = asset->mime_type[0] ? asset->mime_type : content_type;
    size_t k = 0;
    for (; src[k] && src[k] != ';' && src[k] != ' ' && k < sizeof mime - 1; k++)
        mime[k] = src[k];
    mime[k] = 0;
    if (!mime[0])
        snprintf(mime, sizeof mime, "application/octet-stream");
    PyObject *vals[5] = {
        PyBytes_FromStringAndSize(buf->data ? (const char *)buf->data : "", (Py_ssize_t)buf->len),
        PyUnicode_FromString(mime),
        PyUnicode_FromString(asset->id),
        asset->width > 0 ? PyLong_FromLong(asset->width) : Py_NewRef(Py_None),
        asset->height > 0 ? PyLong_FromLong(asset->height) : Py_NewRef(Py_None),
    };
    PyObject *fields = PyTuple_New(5);
    for (int i = 0; i < 5; i++) {
        if (fields && vals[i])
            PyTuple_SetItem(fields, i, vals[i]); /* steals */
        else
            Py_XDECREF(vals[i]);
        if (!vals[i])
            Py_CLEAR(fields);
    }
    return fields;
}

static void expect_job_format(uni1_asset *asset, const char *ext);

PyObject *py_job_images(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                        PyObject *kwnames)
{
    py_state *st = PyType_GetModuleState(cls);
    JobObject *self = (JobObject *)op;
    static const char *const names[] = {"timeout", NULL};
    static const py_argspec spec = {"images", names, 0, 0};
    PyObject *a[1];
    double deadline;
    if (py_parse_args(&spec, args, (Py_ssize_t)nargs, kwnames, a) < 0 ||
        py_deadline(st, a[0], &deadline) < 0)
        return NULL;
    ClientObject *client = py_job_client(st, self);
    if (!client)
        return NULL;
    py_id *ids;
    size_t n;
    if (ready_assets(self, st, deadline, &ids, &n) < 0)
        return NULL;
    if (n == 0)
        return PyList_New(0);
    uni1_asset *assets = calloc(n, sizeof *assets);
    uni1_buffer *bufs = calloc(n, sizeof *bufs);
    char(*ctypes)[64] = calloc(n, sizeof *ctypes);
    PyObject *result = NULL;
    py_call c;
    if (!assets || !bufs || !ctypes) {
        PyErr_NoMemory();
        goto done;
    }
    char fallback[16];
    py_job_fallback_ext(self, st, fallback, sizeof fallback);
    if (py_call_begin(&c, st, client, deadline) < 0)
        goto done;
    uni1_status rc = UNI1_OK;
    for (size_t i = 0; i < n && rc == UNI1_OK; i++) {
        rc = py_run_get_asset(&c, ids[i], &assets[i]);
        expect_job_format(&assets[i], fallback);
        if (rc == UNI1_OK)
            rc = py_run_fetch_to_memory(&c, &assets[i], &bufs[i], ctypes[i], sizeof ctypes[i]);
    }
    if (rc != UNI1_OK || PyErr_Occurred()) {
        py_call_fail(&c, rc, NULL, NULL);
    } else {
        result = PyList_New((Py_ssize_t)n);
        for (size_t i = 0; result && i < n; i++) {
            PyObject *img = py_image_fields(&assets[i], &bufs[i], ctypes[i]);
            if (!img || PyList_SetItem(result, (Py_ssize_t)i, img) < 0)
                Py_CLEAR(result);
        }
    }
    py_call_finish(&c);
done:
    for (size_t i = 0; i < n; i++) {
        if (assets)
            uni1_asset_clear(&assets[i]);
        if (bufs)
            uni1_buffer_clear(&bufs[i]);
    }
    free(assets);
    free(bufs);
    free(ctypes);
    free(ids);
    return result;
}

/* The file extension when the asset has no usable mime type: the format the
 * job asked for (metadata.input.outputFormat, else metadata.output's; PNG,
 * the server's default, when the input leaves it out), else "bin". */
void py_job_fallback_ext(JobObject *self, py_state *st, char *ext, size_t n)
{
    snprintf(ext, n, "bin");
    PyObject *raw = py_job_raw_dict(self, st);
    if (!raw) {
        PyErr_Clear();
        return;
    }
    PyObject *meta = PyDict_Check(raw) ? PyDict_GetItemString(raw, "metadata") : NULL;
    PyObject *input = meta && PyDict_Check(meta) ? PyDict_GetItemString(meta, "input") : NULL;
    PyObject *output = meta && PyDict_Check(meta) ? PyDict_GetItemString(meta, "output") : NULL;
    PyObject *fmt =
        input && PyDict_Check(input) ? PyDict_GetItemString(input, "outputFormat") : NULL;
    if (!fmt && output && PyDict_Check(output))
        fmt = PyDict_GetItemString(output, "outputFormat");
    const char *s = fmt && PyUnicode_Check(fmt)    ? PyUnicode_AsUTF8AndSize(fmt, NULL)
                    : input && PyDict_Check(input) ? "png"
                                                   : NULL;
    if (!s) {
        PyErr_Clear();
    } else if (strcmp(s, "png") == 0 || strcmp(s, "PNG") == 0) {
        snprintf(ext, n, "png");
    } else if (strcmp(s, "jpeg") == 0 || strcmp(s, "jpg") == 0 || strcmp(s, "JPEG") == 0) {
        snprintf(ext, n, "jpg");
    } else if (strcmp(s, "webp") == 0) {
        snprintf(ext, n, "webp");
    }
    Py_DECREF(raw);
}

static const char *extension_for(const char *mime, const char *fallback)
{
    if (strncmp(mime, "image/png", 9) == 0)
        return "png";
    if (strncmp(mime, "image/jpeg", 10) == 0 || strncmp(mime, "image/jpg", 9) == 0)
        return "jpg";
    if (strncmp(mime, "image/webp", 10) == 0)
        return "webp";
    return fallback;
}

/* An asset record without a usable image type gets the one the job asked
 * for, so the core checks the bytes against it (a proxy's HTML error page
 * is never saved as an image). */
static void expect_job_format(uni1_asset *asset, const char *ext)
{
    if (strcmp(extension_for(asset->mime_type, "bin"), "bin") != 0 ||
        strcmp(asset->mime_type, "image/gif") == 0)
        return;
    if (strcmp(ext, "png") == 0)
        snprintf(asset->mime_type, sizeof asset->mime_type, "image/png");
    else if (strcmp(ext, "jpg") == 0)
        snprintf(asset->mime_type, sizeof asset->mime_type, "image/jpeg");
    else if (strcmp(ext, "webp") == 0)
        snprintf(asset->mime_type, sizeof asset->mime_type, "image/webp");
}

static int make_dirs(py_state *st, PyObject *path)
{
    if (!st->os_makedirs) {
        PyObject *os = PyImport_ImportModule("os");
        if (!os)
            return -1;
        st->os_makedirs = PyObject_GetAttrString(os, "makedirs");
        Py_DECREF(os);
        if (!st->os_makedirs)
            return -1;
    }
    PyObject *kw = Py_BuildValue("{s:O}", "exist_ok", Py_True);
    PyObject *args = kw ? PyTuple_Pack(1, path) : NULL;
    PyObject *r = args ? PyObject_Call(st->os_makedirs, args, kw) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(kw);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

PyObject *py_job_download(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                          PyObject *kwnames)
{
    py_state *st = PyType_GetModuleState(cls);
    JobObject *self = (JobObject *)op;
    static const char *const names[] = {"dest", "overwrite", "timeout", "skip", NULL};
    static const py_argspec spec = {"download", names, 1, 0};
    PyObject *a[4];
    double deadline;
    if (py_parse_args(&spec, args, (Py_ssize_t)nargs, kwnames, a) < 0 ||
        py_deadline(st, a[2], &deadline) < 0)
        return NULL;
    int overwrite = 0;
    if (py_arg_flag(st, PY_ARG_CALL, a[1], "overwrite", &overwrite) < 0)
        return NULL;
    /* skip(asset_id, path) -> bool, for this call: true when the file is
     * there already (scenario_uni1.Job passes its client's journal's). */
    PyObject *skip_fn = a[3] && a[3] != Py_None ? a[3] : NULL;
    if (skip_fn && !PyCallable_Check(skip_fn)) {
        PyErr_SetString(st->InvalidRequestTypeError, "skip must be a callable or None");
        return NULL;
    }
    /* Before the directory is made: a closed client creates nothing. */
    ClientObject *client = py_job_client(st, self);
    if (!client)
        return NULL;
    PyObject *dest_bytes = NULL;
    PyObject *dot = NULL;
    if (!a[0]) {
        dot = PyUnicode_FromString(".");
        if (!dot)
            return NULL;
    }
    if (py_arg_path(st, PY_ARG_CALL, a[0] ? a[0] : dot, "dest", &dest_bytes) < 0) {
        Py_XDECREF(dot);
        return NULL;
    }
    Py_XDECREF(dot);
    PyObject *result = NULL;
    py_id *ids = NULL;
    size_t n = 0;
    char(*paths)[PATH_MAX] = NULL;
    char *dir = NULL;
    uni1_asset *assets = NULL;
    char(*fnames)[UNI1_ID_MAX + 16] = NULL;
    size_t *todo = NULL;
    char *fetched = NULL;
    const char *d = PyBytes_AsString(dest_bytes);
    if (!d)
        goto done;
    dir = strdup(*d ? d : ".");
    if (!dir) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t len = strlen(dir); len > 1 && dir[len - 1] == '/'; len--)
        dir[len - 1] = 0;
    /* mkdir -p first: a bad destination fails before minutes of waiting. */
    if (make_dirs(st, dest_bytes) < 0)
        goto done;
    if (ready_assets(self, st, deadline, &ids, &n) < 0)
        goto done;
    char fallback[16];
    py_job_fallback_ext(self, st, fallback, sizeof fallback);
    result = PyList_New(0);
    if (!result || n == 0)
        goto done;
    paths = calloc(n, sizeof *paths);
    if (!paths) {
        PyErr_NoMemory();
        Py_CLEAR(result);
        goto done;
    }
    assets = calloc(n, sizeof *assets);
    fnames = calloc(n, sizeof *fnames);
    todo = calloc(n, sizeof *todo);
    fetched = calloc(n, 1);
    if (!assets || !fnames || !todo || !fetched) {
        PyErr_NoMemory();
        Py_CLEAR(result);
        goto done;
    }
    py_call c;
    if (py_call_begin(&c, st, client, deadline) < 0) {
        Py_CLEAR(result);
        goto done;
    }
    uni1_status rc = UNI1_OK;
    for (size_t i = 0; i < n && rc == UNI1_OK; i++) {
        rc = py_run_get_asset(&c, ids[i], &assets[i]);
        expect_job_format(&assets[i], fallback);
    }
    if (rc != UNI1_OK || PyErr_Occurred()) {
        py_call_fail(&c, rc, NULL, NULL);
        py_call_finish(&c);
        Py_CLEAR(result);
        goto done;
    }
    size_t n_todo = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(fnames[i], sizeof fnames[i], "%s.%s", ids[i],
                 extension_for(assets[i].mime_type, fallback));
        snprintf(paths[i], sizeof paths[i], "%s/%s", dir, fnames[i]);
        int skip = 0;
        if (skip_fn) {
            PyObject *r = PyObject_CallFunction(skip_fn, "ss", ids[i], paths[i]);
            skip = r ? PyObject_IsTrue(r) : -1;
            Py_XDECREF(r);
            if (skip < 0) {
                py_call_finish(&c);
                Py_CLEAR(result);
                goto done;
            }
        }
        if (!skip) {
            fetched[i] = 1;
            todo[n_todo++] = i;
        }
    }
    if (n_todo) {
        uni1_asset *a = calloc(n_todo, sizeof *a);
        const char **nm = calloc(n_todo, sizeof *nm);
        char **out = calloc(n_todo, sizeof *out);
        if (!a || !nm || !out) {
            free(a);
            free(nm);
            free(out);
            PyErr_NoMemory();
            py_call_finish(&c);
            Py_CLEAR(result);
            goto done;
        }
        for (size_t k = 0; k < n_todo; k++) {
            a[k] = assets[todo[k]]; /* shallow: assets keeps ownership */
            nm[k] = fnames[todo[k]];
            out[k] = paths[todo[k]];
        }
        rc = py_run_fetch_to_dir(&c, a, n_todo, dir, nm, overwrite, out, sizeof paths[0]);
        free(a);
        free(nm);
        free(out);
    }
    if (rc != UNI1_OK || PyErr_Occurred()) {
        py_call_fail(&c, rc, NULL, NULL);
        Py_CLEAR(result);
    }
    py_call_finish(&c);
    for (size_t i = 0; result && i < n; i++) {
        PyObject *path = py_path(st, paths[i]);
        PyObject *item =
            path ? Py_BuildValue("(sOO)", ids[i], path, fetched[i] ? Py_True : Py_False) : NULL;
        if (!item || PyList_Append(result, item) < 0)
            Py_CLEAR(result);
        Py_XDECREF(item);
        Py_XDECREF(path);
    }
done:
    Py_DECREF(dest_bytes);
    free(fetched);
    free(dir);
    free(ids);
    free(paths);
    if (assets)
        for (size_t i = 0; i < n; i++)
            uni1_asset_clear(&assets[i]);
    free(assets);
    free(fnames);
    free(todo);
    return result;
}
