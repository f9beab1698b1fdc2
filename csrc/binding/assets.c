/* Client.get_asset: an asset record as the server sent it. (Uploads run on
 * the engine: Client._start(mode="upload").) */
#include <stdlib.h>

#include "binding.h"

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
