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

int py_copy_str(py_state *st, PyObject *o, const char *what, int allow_none, char **out)
{
    *out = NULL;
    if (!o || (allow_none && o == Py_None))
        return 0;
    if (!PyUnicode_Check(o)) {
        PyObject *tn = py_type_name(o);
        if (tn) {
            PyErr_Format(st->InvalidRequestTypeError, "%s must be a str%s, not %U", what,
                         allow_none ? " or None" : "", tn);
            Py_DECREF(tn);
        }
        return -1;
    }
    Py_ssize_t len = 0;
    const char *utf8 = PyUnicode_AsUTF8AndSize(o, &len);
    if (!utf8) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            PyErr_Format(st->InvalidRequestError,
                         "%s is not valid Unicode text (it holds a lone surrogate)", what);
        }
        return -1;
    }
    if (memchr(utf8, 0, (size_t)len)) {
        PyErr_Format(st->InvalidRequestError, "%s contains a NUL character", what);
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

int py_deadline(py_state *st, PyObject *timeout, double *deadline)
{
    *deadline = 0;
    if (!timeout || timeout == Py_None)
        return 0;
    /* Any real number (int, float, numpy scalars, Decimal); not bool. */
    double t = PyBool_Check(timeout) ? -1.0 : PyFloat_AsDouble(timeout);
    if (PyBool_Check(timeout) ||
        (t == -1.0 && PyErr_Occurred() && PyErr_ExceptionMatches(PyExc_TypeError))) {
        PyErr_Clear();
        PyObject *tn = py_type_name(timeout);
        if (tn) {
            PyErr_Format(st->InvalidRequestTypeError,
                         "timeout must be a number of seconds or None, not %U", tn);
            Py_DECREF(tn);
        }
        return -1;
    }
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (isnan(t) || t < 0) {
        PyErr_SetString(st->InvalidRequestError, "timeout must be >= 0");
        return -1;
    }
    if (isinf(t))
        return 0;
    *deadline = uni1_monotonic() + t;
    /* 0 means "no deadline" to the core; a zero timeout must still expire. */
    if (*deadline == 0)
        *deadline = 1e-9;
    return 0;
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
    if (web_search && web_search != Py_None) {
        if (!PyBool_Check(web_search) && !PyLong_Check(web_search)) {
            PyObject *tn = py_type_name(web_search);
            if (tn) {
                PyErr_Format(st->InvalidRequestTypeError, "web_search must be a bool, not %U", tn);
                Py_DECREF(tn);
            }
            goto fail;
        }
        int on = PyObject_IsTrue(web_search);
        if (on < 0)
            goto fail;
        g->params.web_search = on;
    }
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
