/* Client methods for assets: small uploads (inline), large uploads (the
 * multipart flow, read from a file), and asset records. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "binding.h"

PyObject *py_client_upload(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                           PyObject *kwnames)
{
    py_state *st = PyType_GetModuleState(cls);
    ClientObject *self = (ClientObject *)op;
    static const char *const names[] = {"data", "name", "mime_type", "timeout", NULL};
    static const py_argspec spec = {"_upload", names, 3, 3};
    PyObject *a[4];
    if (py_parse_args(&spec, args, (Py_ssize_t)nargs, kwnames, a) < 0)
        return NULL;
    double deadline;
    if (py_deadline(st, a[3], &deadline) < 0)
        return NULL;
    /* The core reads the data with the GIL released: give it a copy of its
     * own (the core base64-encodes it anyway, so this costs little). */
    PyObject *data;
    if (PyUnicode_Check(a[0])) {
        PyErr_SetString(st->InvalidRequestTypeError, "_upload: data must be bytes, not str");
        return NULL;
    }
    data = PyBytes_Check(a[0]) ? Py_NewRef(a[0]) : PyBytes_FromObject(a[0]);
    if (!data)
        return NULL;
    char *name = NULL, *mime = NULL, *buf = NULL;
    char *src = NULL;
    Py_ssize_t len = 0;
    PyObject *result = NULL;
    if (PyBytes_AsStringAndSize(data, &src, &len) < 0 ||
        py_copy_str(st, a[1], "name", 0, &name) < 0 ||
        py_copy_str(st, a[2], "mime_type", 0, &mime) < 0)
        goto done;
    buf = malloc(len > 0 ? (size_t)len : 1);
    if (!buf) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(buf, src, (size_t)len);
    Py_CLEAR(data);
    py_call c;
    if (py_call_begin(&c, st, self, deadline) < 0)
        goto done;
    uni1_asset asset;
    uni1_status rc = py_run_upload_image(&c, buf, (size_t)len, name, mime, &asset);
    if (rc != UNI1_OK || PyErr_Occurred())
        py_call_fail(&c, rc, NULL, NULL);
    else
        result = PyUnicode_FromString(asset.id);
    uni1_asset_clear(&asset);
    py_call_finish(&c);
done:
    Py_XDECREF(data);
    free(buf);
    free(name);
    free(mime);
    return result;
}

PyObject *py_client_upload_file(PyObject *op, PyTypeObject *cls, PyObject *const *args,
                                size_t nargs, PyObject *kwnames)
{
    py_state *st = PyType_GetModuleState(cls);
    ClientObject *self = (ClientObject *)op;
    static const char *const names[] = {"path", "name", "mime_type", "timeout", NULL};
    static const py_argspec spec = {"_upload_file", names, 3, 3};
    PyObject *a[4];
    if (py_parse_args(&spec, args, (Py_ssize_t)nargs, kwnames, a) < 0)
        return NULL;
    double deadline;
    if (py_deadline(st, a[3], &deadline) < 0)
        return NULL;
    PyObject *path_bytes = NULL; /* the path in the filesystem encoding */
    if (py_arg_path(st, PY_ARG_CALL, a[0], "path", &path_bytes) < 0)
        return NULL;
    char *path = NULL, *name = NULL, *mime = NULL;
    PyObject *result = NULL;
    const char *fs_path = PyBytes_AsString(path_bytes);
    if (!fs_path || py_copy_str(st, a[1], "name", 0, &name) < 0 ||
        py_copy_str(st, a[2], "mime_type", 0, &mime) < 0)
        goto done;
    /* A C copy: the core runs with the GIL released. */
    path = malloc(strlen(fs_path) + 1);
    if (!path) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(path, fs_path, strlen(fs_path) + 1);
    py_call c;
    if (py_call_begin(&c, st, self, deadline) < 0)
        goto done;
    uni1_asset asset;
    memset(&asset, 0, sizeof asset);
    uni1_status rc = UNI1_OK;
    int os_errno = 0, not_regular = 0;
    rc = py_run_upload_file(&c, path, name, mime, &asset, &os_errno, &not_regular);
    if (os_errno) {
        errno = os_errno;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, a[0]);
    } else if (not_regular) {
        PyErr_Format(st->InvalidRequestError, "_upload_file: %R is not a regular file", a[0]);
    } else if (rc != UNI1_OK || PyErr_Occurred()) {
        py_call_fail(&c, rc, NULL, NULL);
    } else {
        result = PyUnicode_FromString(asset.id);
    }
    uni1_asset_clear(&asset);
    py_call_finish(&c);
done:
    Py_XDECREF(path_bytes);
    free(path);
    free(name);
    free(mime);
    return result;
}

PyObject *py_client_get_asset(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                              PyObject *kwnames)
{
    py_state *st = PyType_GetModuleState(cls);
    ClientObject *self = (ClientObject *)op;
    static const char *const names[] = {"asset_id", "timeout", NULL};
    static const py_argspec spec = {"get_asset", names, 1, 1};
    PyObject *a[2];
    if (py_parse_args(&spec, args, (Py_ssize_t)nargs, kwnames, a) < 0)
        return NULL;
    double deadline;
    char *asset_id;
    if (py_deadline(st, a[1], &deadline) < 0 || py_copy_str(st, a[0], "asset_id", 0, &asset_id) < 0)
        return NULL;
    PyObject *result = NULL;
    py_call c;
    if (py_call_begin(&c, st, self, deadline) < 0) {
        free(asset_id);
        return NULL;
    }
    uni1_asset asset;
    uni1_status rc = py_run_get_asset(&c, asset_id, &asset);
    if (rc != UNI1_OK || PyErr_Occurred())
        py_call_fail(&c, rc, NULL, NULL);
    else
        result = py_json_loads(st, asset.raw_json, asset.raw_json ? asset.raw_len : 0);
    uni1_asset_clear(&asset);
    py_call_finish(&c);
    free(asset_id);
    return result;
}
