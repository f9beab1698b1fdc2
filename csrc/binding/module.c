/* The module scenario_uni1._core: multi-phase init, module state and the
 * module-level functions (the exceptions are errors.c's). */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

/* curl_multi_poll and curl_multi_wakeup, which every wait relies on. */
#define PY_MIN_CURL_VERSION 0x074400
#define PY_MIN_CURL_TEXT "7.68.0"

/* ---- small helpers shared by the binding --------------------------------- */

PyObject *py_str(const char *s)
{
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

PyObject *py_str_or_none(const char *s)
{
    if (!s)
        Py_RETURN_NONE;
    return py_str(s);
}

PyObject *py_json_loads(py_state *st, const char *buf, size_t len)
{
    if (!st->json_loads) {
        PyObject *json = PyImport_ImportModule("json");
        if (!json)
            return NULL;
        st->json_loads = PyObject_GetAttrString(json, "loads");
        Py_DECREF(json);
        if (!st->json_loads)
            return NULL;
    }
    PyObject *text = PyUnicode_DecodeUTF8(buf ? buf : "", buf ? (Py_ssize_t)len : 0, "replace");
    if (!text)
        return NULL;
    PyObject *res = PyObject_CallFunctionObjArgs(st->json_loads, text, NULL);
    Py_DECREF(text);
    return res;
}

PyObject *py_path(py_state *st, const char *fs_path)
{
    if (!st->path_type) {
        PyObject *pathlib = PyImport_ImportModule("pathlib");
        if (!pathlib)
            return NULL;
        st->path_type = PyObject_GetAttrString(pathlib, "Path");
        Py_DECREF(pathlib);
        if (!st->path_type)
            return NULL;
    }
    PyObject *text = PyUnicode_DecodeFSDefault(fs_path);
    if (!text)
        return NULL;
    PyObject *res = PyObject_CallFunctionObjArgs(st->path_type, text, NULL);
    Py_DECREF(text);
    return res;
}

/* ---- module functions ---------------------------------------------------- */

static const char *const gen_names[] = {"prompt",        "source",     "image_refs", "aspect_ratio",
                                        "output_format", "web_search", NULL};

static PyObject *validate_generate(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    py_state *st = PyModule_GetState(module);
    static const py_argspec spec = {"validate_generate", gen_names, 6, 1};
    PyObject *a[6];
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0)
        return NULL;
    py_gen_args g;
    if (py_gen_args_init(st, &g, a[0], a[1], a[2], a[3], a[4], a[5]) < 0)
        return NULL;
    int rc = py_gen_args_validate(st, &g);
    py_gen_args_free(&g);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* The binding's argument rule for paths the glue opens itself (one place
 * for each rule; a timeout of the glue's is a _core.Deadline). */
static PyObject *fs_path(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
    py_state *st = PyModule_GetState(module);
    static const char *const names[] = {"path", "what", "setting", NULL};
    static const py_argspec spec = {"_fs_path", names, 2, 2};
    PyObject *a[3];
    char *what = NULL;
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0 ||
        py_arg_text(st, PY_ARG_CALL, a[1], "what", 0, &what) < 0)
        return NULL;
    int setting = a[2] ? PyObject_IsTrue(a[2]) : 0;
    PyObject *out = NULL;
    if (setting >= 0)
        py_arg_path(st, setting ? PY_ARG_SETTING : PY_ARG_CALL, a[0], what, &out);
    free(what);
    return out;
}

/* A Job from its state (Job._state()), bound to no client: unpickling (the
 * glue's, scenario_uni1/_job.py) needs no credentials and no network. The
 * glue picks the client and binds it (Job._bind) before its first request. */
static PyObject *rebuild_job(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    py_state *st = PyModule_GetState(module);
    static const char *const names[] = {"job_id", "raw_json", "cost", NULL};
    static const py_argspec spec = {"_rebuild_job", names, 3, 1};
    PyObject *a[3];
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0)
        return NULL;
    char *job_id = NULL, *raw = NULL;
    double cost = -1;
    if (a[2] && a[2] != Py_None) {
        cost = PyFloat_AsDouble(a[2]);
        if (cost == -1 && PyErr_Occurred())
            return NULL;
        if (!(cost >= 0))
            cost = -1;
    }
    if (py_copy_str(st, a[0], "job_id", 0, &job_id) < 0 ||
        py_copy_str(st, a[1], "raw_json", 1, &raw) < 0) {
        free(job_id);
        return NULL;
    }
    uni1_job job;
    memset(&job, 0, sizeof job);
    PyObject *result = NULL;
    if (raw) {
        char err[256];
        if (uni1_parse_job(raw, strlen(raw), &job, err, sizeof err) != UNI1_OK) {
            PyErr_Format(st->InvalidRequestError, "_rebuild_job: unusable job JSON: %s", err);
            goto done;
        }
    }
    if (!job.id[0]) {
        if (strlen(job_id) >= sizeof job.id) {
            PyErr_SetString(st->InvalidRequestError, "_rebuild_job: job id too long");
            goto done;
        }
        strcpy(job.id, job_id);
    } else if (strcmp(job.id, job_id) != 0) {
        PyErr_SetString(st->InvalidRequestError, "_rebuild_job: the JSON is for another job");
        goto done;
    }
    result = py_job_new(st, NULL, &job, cost);
done:
    uni1_job_clear(&job);
    free(job_id);
    free(raw);
    return result;
}

static PyMethodDef module_methods[] = {
    {"validate_generate", (PyCFunction)(void (*)(void))validate_generate,
     METH_FASTCALL | METH_KEYWORDS,
     "validate_generate(prompt, source=None, image_refs=(), aspect_ratio=None, "
     "output_format='png', web_search=False)\n--\n\n"
     "Raise InvalidRequestError if the request breaks the API contract (ids only)."},
    {"_fs_path", (PyCFunction)(void (*)(void))fs_path, METH_FASTCALL | METH_KEYWORDS,
     "_fs_path(path, what, *, setting=False)\n--\n\n"
     "A path argument checked as every call checks it, as bytes in the filesystem "
     "encoding; ConfigurationError for a setting, else InvalidRequestError."},
    {"wait_first", (PyCFunction)(void (*)(void))py_wait_first, METH_FASTCALL | METH_KEYWORDS,
     "wait_first(gens, timeout=None)\n--\n\n"
     "Blocks (GIL released, Ctrl-C works) until one of the generations is done; False when the "
     "timeout passed first."},
    {"_release_spare_buffers", py_release_spare_buffers, METH_NOARGS,
     "_release_spare_buffers($module, /)\n--\n\nGives back the download buffers kept for reuse now "
     "(the engine does it when idle)."},
    {"_at_exit", py_at_exit, METH_NOARGS,
     "_at_exit($module, /)\n--\n\nCalled at interpreter exit: engine threads stop calling "
     "Python, and the callbacks already running finish first."},
    {"_rebuild_job", (PyCFunction)(void (*)(void))rebuild_job, METH_FASTCALL | METH_KEYWORDS,
     "_rebuild_job(job_id, raw_json=None, cost=None)\n--\n\n"
     "A Job from its state (Job._state()), bound to no client until Job._bind(client)."},
    {NULL, NULL, 0, NULL}};

/* ---- init ---------------------------------------------------------------- */

static int check_curl(void)
{
    const curl_version_info_data *info = curl_version_info(CURLVERSION_NOW);
    if (!info || info->version_num < PY_MIN_CURL_VERSION) {
        PyErr_Format(PyExc_ImportError,
                     "scenario_uni1 needs libcurl " PY_MIN_CURL_TEXT
                     " or later (for curl_multi_poll), but the linked libcurl is %s; "
                     "upgrade libcurl (e.g. apt-get install libcurl4) and reinstall",
                     info ? info->version : "unknown");
        return -1;
    }
    return 0;
}

static int add_constants(PyObject *m)
{
    if (PyModule_AddStringConstant(m, "__version__", UNI1_VERSION) < 0 ||
        PyModule_AddStringConstant(m, "curl_version", uni1_curl_version()) < 0 ||
        PyModule_AddStringConstant(m, "DEFAULT_BASE_URL", UNI1_DEFAULT_BASE_URL) < 0)
        return -1;
    Py_ssize_t n = 0;
    while (uni1_aspect_ratios[n])
        n++;
    PyObject *ratios = PyTuple_New(n);
    if (!ratios)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyUnicode_FromString(uni1_aspect_ratios[i]);
        if (!s || PyTuple_SetItem(ratios, i, s) < 0) {
            Py_DECREF(ratios);
            return -1;
        }
    }
    int rc = PyModule_AddObjectRef(m, "ASPECT_RATIOS", ratios);
    Py_DECREF(ratios);
    if (rc < 0)
        return -1;
    PyObject *formats = Py_BuildValue("(ss)", "png", "jpeg");
    if (!formats)
        return -1;
    rc = PyModule_AddObjectRef(m, "OUTPUT_FORMATS", formats);
    Py_DECREF(formats);
    return rc;
}

/* Engine threads take the GIL for generation events; at interpreter exit they
 * must stop doing so before the interpreter goes away: _at_exit (the exit
 * gate, call.c), registered with the standard library's atexit (a built-in
 * module: no import cost). */
static int register_at_exit(PyObject *m)
{
#ifndef _WIN32
    static int forks_watched;
    if (!forks_watched && pthread_atfork(NULL, NULL, py_gate_forked_child) == 0)
        forks_watched = 1;
#endif
    PyObject *atexit = PyImport_ImportModule("atexit");
    PyObject *fn = atexit ? PyObject_GetAttrString(m, "_at_exit") : NULL;
    PyObject *r = fn ? PyObject_CallMethod(atexit, "register", "O", fn) : NULL;
    Py_XDECREF(atexit);
    Py_XDECREF(fn);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int module_exec(PyObject *m)
{
    py_state *st = PyModule_GetState(m);
    if (check_curl() < 0)
        return -1;
    char err[256] = "";
    if (uni1_global_init(err, sizeof err) != UNI1_OK) {
        PyErr_Format(PyExc_ImportError, "scenario_uni1: %s", err);
        return -1;
    }
    if (py_errors_init(m, st) < 0)
        return -1;
    st->client_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &py_client_spec, NULL);
    if (!st->client_type || PyModule_AddType(m, st->client_type) < 0)
        return -1;
    st->job_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &py_job_spec, NULL);
    if (!st->job_type || PyModule_AddType(m, st->job_type) < 0)
        return -1;
    st->generation_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &py_generation_spec, NULL);
    if (!st->generation_type || PyModule_AddType(m, st->generation_type) < 0)
        return -1;
    st->deadline_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &py_deadline_spec, NULL);
    if (!st->deadline_type || PyModule_AddType(m, st->deadline_type) < 0)
        return -1;
    if (add_constants(m) < 0)
        return -1;
    return register_at_exit(m);
}

static int module_traverse(PyObject *m, visitproc visit, void *arg)
{
    py_state *st = PyModule_GetState(m);
    if (!st)
        return 0;
    Py_VISIT(st->client_type);
    Py_VISIT(st->job_type);
    Py_VISIT(st->generation_type);
    Py_VISIT(st->deadline_type);
    Py_VISIT(st->Uni1Error);
    Py_VISIT(st->InvalidRequestError);
    Py_VISIT(st->InvalidRequestTypeError);
    Py_VISIT(st->ConfigurationError);
    Py_VISIT(st->APIError);
    Py_VISIT(st->AuthenticationError);
    Py_VISIT(st->PermissionDeniedError);
    Py_VISIT(st->NotFoundError);
    Py_VISIT(st->RateLimitError);
    Py_VISIT(st->ServerError);
    Py_VISIT(st->ConnectionError);
    Py_VISIT(st->TimeoutError);
    Py_VISIT(st->SubmissionUncertainError);
    Py_VISIT(st->JobError);
    Py_VISIT(st->JobFailedError);
    Py_VISIT(st->JobCanceledError);
    Py_VISIT(st->path_type);
    Py_VISIT(st->json_loads);
    Py_VISIT(st->os_makedirs);
    return 0;
}

static int module_clear(PyObject *m)
{
    py_state *st = PyModule_GetState(m);
    if (!st)
        return 0;
    Py_CLEAR(st->client_type);
    Py_CLEAR(st->job_type);
    Py_CLEAR(st->generation_type);
    Py_CLEAR(st->deadline_type);
    Py_CLEAR(st->Uni1Error);
    Py_CLEAR(st->InvalidRequestError);
    Py_CLEAR(st->InvalidRequestTypeError);
    Py_CLEAR(st->ConfigurationError);
    Py_CLEAR(st->APIError);
    Py_CLEAR(st->AuthenticationError);
    Py_CLEAR(st->PermissionDeniedError);
    Py_CLEAR(st->NotFoundError);
    Py_CLEAR(st->RateLimitError);
    Py_CLEAR(st->ServerError);
    Py_CLEAR(st->ConnectionError);
    Py_CLEAR(st->TimeoutError);
    Py_CLEAR(st->SubmissionUncertainError);
    Py_CLEAR(st->JobError);
    Py_CLEAR(st->JobFailedError);
    Py_CLEAR(st->JobCanceledError);
    Py_CLEAR(st->path_type);
    Py_CLEAR(st->json_loads);
    Py_CLEAR(st->os_makedirs);
    return 0;
}

static void module_free(void *m)
{
    module_clear((PyObject *)m);
}

/* Built against the 3.10 limited API, the per-interpreter and free-threading
 * slots are not visible; they are listed for builds against newer limited
 * API versions. uni1_global_init (curl_global_init) is process-wide, so a
 * per-interpreter GIL is not claimed, and the binding relies on the GIL. */
static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, (void *)module_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "scenario_uni1._core",
    .m_doc = "The C extension of scenario_uni1: a libcurl client for Scenario's Luma Uni-1 Max.\n\n"
             "Import scenario_uni1, not this module.",
    .m_size = sizeof(py_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__core(void); /* the one exported symbol */

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModuleDef_Init(&module_def);
}
