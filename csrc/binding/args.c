/* Argument parsing (the limited API has no Argument Clinic fast path) and the
 * conversions of Python arguments into C memory the binding owns, so that the
 * core can run with the GIL released without touching a Python object. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

PyObject *py_type_name(PyObject *o)
{
    return PyObject_GetAttrString((PyObject *)Py_TYPE(o), "__qualname__");
}

int py_parse_args(const py_argspec *spec, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames, PyObject **out)
{
    Py_ssize_t n_names = 0;
    while (spec->names[n_names])
        n_names++;
    for (Py_ssize_t i = 0; i < n_names; i++)
        out[i] = NULL;
    if (nargs > spec->n_positional) {
        if (spec->n_positional == 0)
            PyErr_Format(PyExc_TypeError, "%s() takes no positional arguments", spec->fname);
        else
            PyErr_Format(PyExc_TypeError, "%s() takes at most %d positional argument%s (%zd given)",
                         spec->fname, spec->n_positional, spec->n_positional == 1 ? "" : "s",
                         nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        out[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_Size(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GetItem(kwnames, k);
        if (!key)
            return -1;
        Py_ssize_t i = 0;
        for (; i < n_names; i++)
            if (PyUnicode_CompareWithASCIIString(key, spec->names[i]) == 0)
                break;
        if (i == n_names) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                         spec->fname, key);
            return -1;
        }
        if (out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", spec->fname,
                         spec->names[i]);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (Py_ssize_t i = 0; i < spec->n_required; i++) {
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", spec->fname,
                         spec->names[i]);
            return -1;
        }
    }
    return 0;
}

/* ---- one helper per rule ---------------------------------------------------
 * A bad setting of Client() is a ConfigurationError; a bad argument of a call
 * is an InvalidRequestError, an InvalidRequestTypeError (also a TypeError)
 * when its type is wrong. Messages name the argument, never its value (it may
 * be a credential). */

static PyObject *bad_value(py_state *st, py_arg_kind kind)
{
    return kind == PY_ARG_SETTING ? st->ConfigurationError : st->InvalidRequestError;
}

static PyObject *bad_type(py_state *st, py_arg_kind kind)
{
    return kind == PY_ARG_SETTING ? st->ConfigurationError : st->InvalidRequestTypeError;
}

static int raise_type(py_state *st, py_arg_kind kind, PyObject *o, const char *what,
                      const char *expected)
{
    PyObject *tn = py_type_name(o);
    if (tn) {
        PyErr_Format(bad_type(st, kind), "%s must be %s, not %U", what, expected, tn);
        Py_DECREF(tn);
    }
    return -1;
}

int py_arg_text(py_state *st, py_arg_kind kind, PyObject *o, const char *what, int allow_none,
                char **out)
{
    *out = NULL;
    if (!o || (allow_none && o == Py_None))
        return 0;
    if (!PyUnicode_Check(o))
        return raise_type(st, kind, o, what, allow_none ? "a str or None" : "a str");
    Py_ssize_t len = 0;
    const char *utf8 = PyUnicode_AsUTF8AndSize(o, &len);
    if (!utf8) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            PyErr_Format(bad_value(st, kind),
                         "%s is not valid Unicode text (it holds a lone surrogate)", what);
        }
        return -1;
    }
    if (memchr(utf8, 0, (size_t)len)) {
        PyErr_Format(bad_value(st, kind), "%s contains a NUL character", what);
        return -1;
    }
    char *copy = malloc((size_t)len + 1);
    if (!copy) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(copy, utf8, (size_t)len + 1);
    *out = copy;
    return 0;
}

int py_arg_seconds(py_state *st, py_arg_kind kind, PyObject *o, const char *what, int flags,
                   double *out)
{
    if (!o || (o == Py_None && (flags & PY_ALLOW_NONE)))
        return 0;
    const char *expected =
        flags & PY_ALLOW_NONE ? "a number of seconds or None" : "a number of seconds";
    /* Any real number (int, float, numpy scalars, Decimal), never a bool:
     * timeout=True is a mistake, not one second. */
    if (PyBool_Check(o) || o == Py_None)
        return raise_type(st, kind, o, what, expected);
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            return raise_type(st, kind, o, what, expected);
        }
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(bad_value(st, kind), "%s is too large", what);
        }
        return -1;
    }
    if (isnan(v) || v < 0) {
        PyErr_Format(bad_value(st, kind), "%s must be a number of seconds >= 0", what);
        return -1;
    }
    if (isinf(v) && !(flags & PY_ALLOW_INF)) {
        PyErr_Format(bad_value(st, kind), "%s must be a finite number of seconds", what);
        return -1;
    }
    *out = v;
    return 1;
}

int py_arg_count(py_state *st, py_arg_kind kind, PyObject *o, const char *what, int flags, long lo,
                 long hi, long *out)
{
    if (!o || (o == Py_None && (flags & PY_ALLOW_NONE)))
        return 0;
    /* An int (or anything with __index__), never a bool nor a float. */
    PyObject *index = PyBool_Check(o) || o == Py_None ? NULL : PyNumber_Index(o);
    if (!index) {
        if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_TypeError))
            return -1;
        PyErr_Clear();
        return raise_type(st, kind, o, what, "an int");
    }
    int overflow = 0;
    long v = PyLong_AsLongAndOverflow(index, &overflow);
    Py_DECREF(index);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow || v < lo || v > hi) {
        PyErr_Format(bad_value(st, kind), "%s must be within %ld..%ld", what, lo, hi);
        return -1;
    }
    *out = v;
    return 1;
}

int py_arg_flag(py_state *st, py_arg_kind kind, PyObject *o, const char *what, int *out)
{
    if (!o || o == Py_None)
        return 0;
    /* Only True or False: overwrite="no" or web_search=float("nan") must not
     * quietly mean yes. */
    if (!PyBool_Check(o))
        return raise_type(st, kind, o, what, "a bool");
    *out = o == Py_True;
    return 1;
}

int py_arg_path(py_state *st, py_arg_kind kind, PyObject *o, const char *what, PyObject **out)
{
    *out = NULL;
    PyObject *bytes = NULL;
    if (!PyUnicode_FSConverter(o, &bytes)) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            return raise_type(st, kind, o, what, "a path (str, bytes or os.PathLike)");
        }
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            PyErr_Format(bad_value(st, kind),
                         "%s is not a valid file name (it holds a lone surrogate)", what);
        } else if (PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            PyErr_Format(bad_value(st, kind), "%s contains a NUL character", what);
        }
        return -1;
    }
    *out = bytes;
    return 0;
}

int py_copy_str(py_state *st, PyObject *o, const char *what, int allow_none, char **out)
{
    return py_arg_text(st, PY_ARG_CALL, o, what, allow_none, out);
}

void py_gen_args_free(py_gen_args *g)
{
    free(g->prompt);
    free(g->source);
    free(g->aspect_ratio);
    for (size_t i = 0; i < g->n_refs; i++)
        free(g->refs[i]);
    free(g->refs);
    memset(g, 0, sizeof *g);
}

static int parse_refs(py_state *st, py_gen_args *g, PyObject *image_refs)
{
    if (!image_refs || image_refs == Py_None)
        return 0;
    if (PyUnicode_Check(image_refs) || PyBytes_Check(image_refs)) {
        PyErr_SetString(st->InvalidRequestTypeError,
                        "image_refs must be a sequence of asset ids (a list or tuple), not a "
                        "single string");
        return -1;
    }
    PyObject *seq = PySequence_Tuple(image_refs);
    if (!seq) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyObject *tn = py_type_name(image_refs);
            PyErr_Clear();
            if (tn) {
                PyErr_Format(st->InvalidRequestTypeError,
                             "image_refs must be a sequence of asset ids, not %U", tn);
                Py_DECREF(tn);
            }
        }
        return -1;
    }
    Py_ssize_t n = PyTuple_Size(seq);
    int rc = 0;
    if (n > 0) {
        g->refs = calloc((size_t)n, sizeof *g->refs);
        if (!g->refs) {
            Py_DECREF(seq);
            PyErr_NoMemory();
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < n && rc == 0; i++) {
        char what[32];
        snprintf(what, sizeof what, "image_refs[%zd]", i);
        rc = py_copy_str(st, PyTuple_GetItem(seq, i), what, 0, &g->refs[i]);
        if (rc == 0)
            g->n_refs++;
    }
    Py_DECREF(seq);
    return rc;
}

int py_gen_args_init(py_state *st, py_gen_args *g, PyObject *prompt, PyObject *source,
                     PyObject *image_refs, PyObject *aspect_ratio, PyObject *output_format,
                     PyObject *web_search)
{
    memset(g, 0, sizeof *g);
    if (!prompt) {
        PyErr_SetString(PyExc_TypeError, "missing required argument 'prompt'");
        return -1;
    }
    if (py_copy_str(st, prompt, "prompt", 0, &g->prompt) < 0 ||
        py_copy_str(st, source, "source", 1, &g->source) < 0 || parse_refs(st, g, image_refs) < 0 ||
        py_copy_str(st, aspect_ratio, "aspect_ratio", 1, &g->aspect_ratio) < 0)
        goto fail;

    g->params.output_format = UNI1_FORMAT_PNG;
    if (output_format && output_format != Py_None) {
        char *fmt = NULL;
        if (py_copy_str(st, output_format, "output_format", 0, &fmt) < 0)
            goto fail;
        int known = 1;
        if (strcmp(fmt, "png") == 0)
            g->params.output_format = UNI1_FORMAT_PNG;
        else if (strcmp(fmt, "jpeg") == 0)
            g->params.output_format = UNI1_FORMAT_JPEG;
        else
            known = 0;
        if (!known) {
            PyErr_Format(st->InvalidRequestError,
                         "output_format must be 'png' or 'jpeg', not '%.40s'", fmt);
            free(fmt);
            goto fail;
        }
        free(fmt);
    }
    int on = 0;
    if (py_arg_flag(st, PY_ARG_CALL, web_search, "web_search", &on) < 0)
        goto fail;
    g->params.web_search = on;
    g->params.prompt = g->prompt;
    g->params.source = g->source;
    g->params.image_refs = (const char *const *)g->refs;
    g->params.n_image_refs = g->n_refs;
    g->params.aspect_ratio = g->aspect_ratio;
    return 0;
fail:
    py_gen_args_free(g);
    return -1;
}

int py_gen_args_validate(py_state *st, const py_gen_args *g)
{
    char err[256] = "";
    if (uni1_validate_generate(&g->params, err, sizeof err) != UNI1_OK) {
        PyObject *msg = PyUnicode_DecodeUTF8(err, (Py_ssize_t)strlen(err), "replace");
        if (msg) {
            PyErr_SetObject(st->InvalidRequestError, msg);
            Py_DECREF(msg);
        }
        return -1;
    }
    return 0;
}

/* ---- the settings of Client() -------------------------------------------- */

void py_settings_free(py_settings *cfg)
{
    char **owned[] = {&cfg->api_key,   &cfg->api_secret, &cfg->bearer_token,
                      &cfg->base_url,  &cfg->project_id, &cfg->user_agent,
                      &cfg->ca_bundle, &cfg->proxy,      &cfg->ca_fallback};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) {
        free(*owned[i]);
        *owned[i] = NULL;
    }
}

/* An empty string is "not set", like an empty environment variable. */
static const char *set_or_null(const char *s)
{
    return s && *s ? s : NULL;
}

static int copy_path_setting(py_state *st, PyObject *o, const char *what, char **out)
{
    *out = NULL;
    if (!o || o == Py_None)
        return 0;
    PyObject *bytes;
    if (py_arg_path(st, PY_ARG_SETTING, o, what, &bytes) < 0)
        return -1;
    const char *s = PyBytes_AsString(bytes);
    *out = s ? strdup(s) : NULL;
    Py_DECREF(bytes);
    if (!*out) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return -1;
    }
    return 0;
}

int py_settings_init(py_state *st, py_settings *cfg, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"api_key",      "api_secret",  "bearer_token",    "base_url",
                             "project_id",   "timeout",     "max_retries",     "user_agent",
                             "ca_bundle",    "proxy",       "connect_timeout", "stall_timeout",
                             "backoff_base", "backoff_max", "settle_window",   "resend_uncertain",
                             "_ca_fallback", NULL};
    PyObject *key = NULL, *secret = NULL, *bearer = NULL, *base_url = NULL, *project_id = NULL;
    PyObject *timeout = NULL, *max_retries = NULL, *user_agent = NULL, *ca_bundle = NULL;
    PyObject *proxy = NULL, *connect_timeout = NULL, *stall_timeout = NULL;
    PyObject *backoff_base = NULL, *backoff_max = NULL;
    PyObject *settle_window = NULL, *resend_uncertain = NULL, *ca_fallback = NULL;
    memset(cfg, 0, sizeof *cfg);
    uni1_options *o = &cfg->options;
    uni1_options_init(o);
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO$OOOOOOOOOOOOOOO:Client", kwlist, &key,
                                     &secret, &bearer, &base_url, &project_id, &timeout,
                                     &max_retries, &user_agent, &ca_bundle, &proxy,
                                     &connect_timeout, &stall_timeout, &backoff_base, &backoff_max,
                                     &settle_window, &resend_uncertain, &ca_fallback))
        return -1;
    long retries = o->max_retries;
    /* The types and the conversions are judged here; the ranges by the core
     * (uni1_client_new), whose refusal is a ConfigurationError too. */
    if (py_arg_text(st, PY_ARG_SETTING, key, "api_key", 1, &cfg->api_key) < 0 ||
        py_arg_text(st, PY_ARG_SETTING, secret, "api_secret", 1, &cfg->api_secret) < 0 ||
        py_arg_text(st, PY_ARG_SETTING, bearer, "bearer_token", 1, &cfg->bearer_token) < 0 ||
        py_arg_text(st, PY_ARG_SETTING, base_url, "base_url", 1, &cfg->base_url) < 0 ||
        py_arg_text(st, PY_ARG_SETTING, project_id, "project_id", 1, &cfg->project_id) < 0 ||
        py_arg_text(st, PY_ARG_SETTING, user_agent, "user_agent", 1, &cfg->user_agent) < 0 ||
        copy_path_setting(st, ca_bundle, "ca_bundle", &cfg->ca_bundle) < 0 ||
        copy_path_setting(st, ca_fallback, "_ca_fallback", &cfg->ca_fallback) < 0 ||
        py_arg_text(st, PY_ARG_SETTING, proxy, "proxy", 1, &cfg->proxy) < 0 ||
        py_arg_seconds(st, PY_ARG_SETTING, timeout, "timeout", 0, &o->request_timeout) < 0 ||
        py_arg_count(st, PY_ARG_SETTING, max_retries, "max_retries", 0, 0, 100, &retries) < 0 ||
        py_arg_seconds(st, PY_ARG_SETTING, connect_timeout, "connect_timeout", 0,
                       &o->connect_timeout) < 0 ||
        py_arg_seconds(st, PY_ARG_SETTING, stall_timeout, "stall_timeout", PY_ALLOW_NONE,
                       &o->stall_timeout) < 0 ||
        py_arg_seconds(st, PY_ARG_SETTING, backoff_base, "backoff_base", 0, &o->backoff_base) < 0 ||
        py_arg_seconds(st, PY_ARG_SETTING, backoff_max, "backoff_max", 0, &o->backoff_max) < 0 ||
        py_arg_seconds(st, PY_ARG_SETTING, settle_window, "settle_window", 0, &o->settle_window) <
            0 ||
        py_arg_flag(st, PY_ARG_SETTING, resend_uncertain, "resend_uncertain",
                    &o->resend_uncertain) < 0) {
        py_settings_free(cfg);
        return -1;
    }
    if (stall_timeout && stall_timeout != Py_None && o->stall_timeout == 0) {
        /* 0 means "unset" to the core; None asks for that. */
        PyErr_SetString(st->ConfigurationError,
                        "stall_timeout must be above 0 seconds, or None for the default");
        py_settings_free(cfg);
        return -1;
    }
    o->max_retries = (int)retries;
    o->api_key = set_or_null(cfg->api_key);
    o->api_secret = set_or_null(cfg->api_secret);
    o->bearer_token = set_or_null(cfg->bearer_token);
    o->base_url = set_or_null(cfg->base_url);
    o->project_id = cfg->project_id;
    o->user_agent = set_or_null(cfg->user_agent);
    o->ca_bundle = set_or_null(cfg->ca_bundle);
    o->ca_fallback = set_or_null(cfg->ca_fallback);
    o->proxy = set_or_null(cfg->proxy);
    return 0;
}
