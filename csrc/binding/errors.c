/* The exceptions of scenario_uni1._core: their classes, and THE mapping of a
 * failed core call to one of them. The mapping reads the fields of
 * uni1_error (status, http_status, source, ...), never the wording of its
 * message. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "binding.h"

/* ISO 8601 UTC with milliseconds, e.g. "2025-01-31T12:00:00.123Z". */
static PyObject *iso_utc(double unix_time)
{
    time_t secs = (time_t)unix_time;
    int ms = (int)((unix_time - (double)secs) * 1000.0);
    if (ms < 0)
        ms = 0;
    if (ms > 999)
        ms = 999;
    struct tm tm;
    char text[48];
    if (!gmtime_r(&secs, &tm) || !strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm))
        Py_RETURN_NONE;
    return PyUnicode_FromFormat("%s.%03dZ", text, ms);
}

static double unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Instantiates type(message), sets the attributes (NULL-terminated pairs of
 * name and new reference, NULL values meaning None) and raises it. The
 * references are consumed in every case. */
static PyObject *raise_with_attrs(PyObject *type, PyObject *message, ...)
{
    va_list ap;
    PyObject *exc = message ? PyObject_CallFunctionObjArgs(type, message, NULL) : NULL;
    Py_XDECREF(message);
    int ok = exc != NULL;
    va_start(ap, message);
    for (;;) {
        const char *name = va_arg(ap, const char *);
        if (!name)
            break;
        PyObject *value = va_arg(ap, PyObject *);
        if (ok && PyObject_SetAttrString(exc, name, value ? value : Py_None) < 0)
            ok = 0;
        Py_XDECREF(value);
    }
    va_end(ap);
    if (ok)
        PyErr_SetObject(type, exc);
    Py_XDECREF(exc);
    return NULL;
}

/* OSError(errnum, message): OSError's constructor picks the subclass the
 * errno stands for (FileExistsError, PermissionError, ...), so callers can
 * catch what they would catch from open(). */
static PyObject *raise_os_error(int errnum, const char *message)
{
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "iN", errnum, py_str(message));
    if (exc) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static PyObject *http_error_class(py_state *st, long status)
{
    switch (status) {
    case 401:
        return st->AuthenticationError;
    case 403:
        return st->PermissionDeniedError;
    case 404:
        return st->NotFoundError;
    case 429:
        return st->RateLimitError;
    default:
        return status >= 500 && status <= 599 ? st->ServerError : st->APIError;
    }
}

static PyObject *body_or_none(const uni1_error *err)
{
    if (!err || !err->body)
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(err->body, (Py_ssize_t)err->body_len, "replace");
}

static PyObject *trace_or_none(const uni1_error *err)
{
    return py_str_or_none(err && err->trace_id[0] ? err->trace_id : NULL);
}

static PyObject *raise_http(py_state *st, const uni1_error *err)
{
    long status = err->http_status;
    int has_reason = err->message[0] && err->source != UNI1_MSG_NONE;
    PyObject *reason = has_reason ? py_str(err->message) : Py_NewRef(Py_None);
    if (!reason)
        return NULL;
    PyObject *msg;
    if (has_reason && err->trace_id[0])
        msg = PyUnicode_FromFormat("HTTP %ld: %U (trace id %s)", status, reason, err->trace_id);
    else if (has_reason)
        msg = PyUnicode_FromFormat("HTTP %ld: %U", status, reason);
    else if (err->trace_id[0])
        msg = PyUnicode_FromFormat("HTTP %ld (trace id %s)", status, err->trace_id);
    else
        msg = PyUnicode_FromFormat("HTTP %ld", status);
    PyObject *cls = http_error_class(st, status);
    PyObject *retryable = PyBool_FromLong(uni1_status_is_retryable(UNI1_ERR_HTTP, status));
    if (cls == st->RateLimitError) {
        PyObject *after = err->retry_after >= 0 ? PyFloat_FromDouble(err->retry_after) : NULL;
        return raise_with_attrs(cls, msg, "status_code", PyLong_FromLong(status), "reason", reason,
                                "body", body_or_none(err), "retryable", retryable, "trace_id",
                                trace_or_none(err), "retry_after", after, NULL);
    }
    return raise_with_attrs(cls, msg, "status_code", PyLong_FromLong(status), "reason", reason,
                            "body", body_or_none(err), "retryable", retryable, "trace_id",
                            trace_or_none(err), NULL);
}

/* An upload the server ended "failed": an APIError whose message is the
 * server's reason, without the "HTTP <n>" of a refused request (no request
 * was refused). */
static PyObject *raise_upload_failed(py_state *st, const uni1_error *err)
{
    PyObject *msg = py_str(err->message[0] ? err->message : "the upload failed on the server");
    if (!msg)
        return NULL;
    return raise_with_attrs(st->APIError, Py_NewRef(msg), "status_code", NULL, "reason", msg,
                            "body", body_or_none(err), "retryable", Py_NewRef(Py_False), "trace_id",
                            NULL, NULL);
}

static PyObject *raise_protocol(py_state *st, const uni1_error *err)
{
    /* The core's message already starts with UNI1_MALFORMED. */
    PyObject *msg = py_str(err->message[0] ? err->message : UNI1_MALFORMED);
    if (!msg)
        return NULL;
    PyObject *code = err->http_status ? PyLong_FromLong(err->http_status) : NULL;
    return raise_with_attrs(st->APIError, msg, "status_code", code, "reason", NULL, "body",
                            body_or_none(err), "retryable", Py_NewRef(Py_False), "trace_id",
                            trace_or_none(err), NULL);
}

static PyObject *raise_job_error(py_state *st, PyObject *cls, PyObject *job, PyObject *msg)
{
    PyObject *error = NULL, *hint = NULL;
    if (job) {
        const uni1_job *j = &((JobObject *)job)->job;
        error = j->error ? py_str(j->error) : NULL;
        hint = j->hint ? py_str(j->hint) : NULL;
    }
    (void)st;
    return raise_with_attrs(cls, msg, "job", job ? Py_NewRef(job) : NULL, "error", error, "hint",
                            hint, NULL);
}

static PyObject *raise_uncertain(py_state *st, const uni1_error *err,
                                 const uni1_generate_params *params)
{
    PyObject *request = NULL;
    if (params) {
        char *body = NULL;
        char ignored[128];
        if (uni1_build_generate_body(params, &body, ignored, sizeof ignored) == UNI1_OK) {
            request = py_json_loads(st, body, strlen(body));
            free(body);
            if (!request)
                return NULL;
        }
    }
    PyObject *sent_at = iso_utc(err->sent_at > 0 ? err->sent_at : unix_now());
    return raise_with_attrs(st->SubmissionUncertainError, py_str(err->message), "request", request,
                            "sent_at", sent_at, NULL);
}

PyObject *py_raise_core(py_state *st, uni1_status status, const uni1_error *err,
                        const py_error_extra *extra)
{
    /* pycurl's rule: a Python exception raised while the core ran (Ctrl-C in
     * the interrupt callback, a progress callback that raised) is the one the
     * caller sees. */
    if (PyErr_Occurred())
        return NULL;
    uni1_error blank;
    if (!err) {
        memset(&blank, 0, sizeof blank);
        blank.retry_after = -1;
        err = &blank;
    }
    const char *m = err->message[0] ? err->message : uni1_status_name(status);
    PyObject *job = extra ? extra->job : NULL;
    switch (status) {
    case UNI1_OK:
        PyErr_SetString(PyExc_SystemError, "scenario_uni1: mapped a successful call");
        return NULL;
    case UNI1_ERR_HTTP:
        return err->source == UNI1_MSG_UPLOAD ? raise_upload_failed(st, err) : raise_http(st, err);
    case UNI1_ERR_CONNECT:
    case UNI1_ERR_NETWORK:
    case UNI1_ERR_TLS:
        return raise_with_attrs(st->ConnectionError, py_str(m), NULL);
    case UNI1_ERR_TIMEOUT:
        return raise_with_attrs(st->TimeoutError, py_str(m), NULL);
    case UNI1_ERR_PROTOCOL:
        return raise_protocol(st, err);
    case UNI1_ERR_INVALID:
        return raise_with_attrs(st->InvalidRequestError, py_str(m), NULL);
    case UNI1_ERR_CONFIG:
        return raise_with_attrs(st->ConfigurationError, py_str(m), NULL);
    case UNI1_ERR_NOMEM:
        return raise_with_attrs(PyExc_MemoryError, py_str(m), NULL);
    case UNI1_ERR_IO:
        if (err->os_errno == 0)
            return raise_with_attrs(PyExc_OSError, py_str(m), NULL);
        return raise_os_error(err->os_errno, m);
    case UNI1_ERR_EXISTS:
        return raise_os_error(EEXIST, m);
    case UNI1_ERR_INTERRUPTED:
        if (extra && extra->stop == PY_STOP_CANCEL && job)
            return raise_job_error(
                st, st->JobCanceledError, job,
                PyUnicode_FromFormat("stopped waiting for job %s: cancel() was called",
                                     ((JobObject *)job)->job.id));
        if (extra && extra->stop == PY_STOP_CLOSED)
            return raise_with_attrs(st->ConfigurationError,
                                    PyUnicode_FromString("client is closed"), NULL);
        return raise_with_attrs(st->Uni1Error, py_str(m), NULL);
    case UNI1_ERR_JOB_FAILED:
        return raise_job_error(st, st->JobFailedError, job, py_str(m));
    case UNI1_ERR_JOB_CANCELED:
        return raise_job_error(st, st->JobCanceledError, job, py_str(m));
    case UNI1_ERR_UNCERTAIN:
        return raise_uncertain(st, err, extra ? extra->params : NULL);
    default: {
        PyObject *text = py_str(m);
        if (!text)
            return NULL;
        PyObject *msg = PyUnicode_FromFormat("%s: %U", uni1_status_name(status), text);
        Py_DECREF(text);
        return raise_with_attrs(st->Uni1Error, msg, NULL);
    }
    }
}

/* Creates one exception class, sets default (None) class attributes, adds it
 * to the module and keeps it in *slot. */
static int add_exception(PyObject *m, PyObject **slot, const char *name, const char *doc,
                         PyObject *bases, const char *const *attrs)
{
    /* Public classes carry the package's name (they are re-exported there, and
     * pickle finds them there); the extra one lives in _core. */
    char qualified[96];
    snprintf(qualified, sizeof qualified, "%s.%s",
             strcmp(name, "InvalidRequestTypeError") == 0 ? "scenario_uni1._core" : "scenario_uni1",
             name);
    PyObject *cls = PyErr_NewExceptionWithDoc(qualified, doc, bases, NULL);
    if (!cls)
        return -1;
    for (size_t i = 0; attrs && attrs[i]; i++) {
        if (PyObject_SetAttrString(cls, attrs[i], Py_None) < 0) {
            Py_DECREF(cls);
            return -1;
        }
    }
    *slot = cls;
    return PyModule_AddObjectRef(m, name, cls);
}

static int add_exception2(PyObject *m, PyObject **slot, const char *name, const char *doc,
                          PyObject *base1, PyObject *base2, const char *const *attrs)
{
    PyObject *bases = PyTuple_Pack(2, base1, base2);
    if (!bases)
        return -1;
    int rc = add_exception(m, slot, name, doc, bases, attrs);
    Py_DECREF(bases);
    return rc;
}

int py_errors_init(PyObject *m, py_state *st)
{
    static const char *const api_attrs[] = {"status_code", "reason",   "body",
                                            "retryable",   "trace_id", NULL};
    static const char *const rate_attrs[] = {"retry_after", NULL};
    static const char *const uncertain_attrs[] = {"request", "sent_at", NULL};
    static const char *const job_attrs[] = {"job", "error", "hint", NULL};

    if (add_exception(m, &st->Uni1Error, "Uni1Error", "Base class of every scenario_uni1 error.",
                      PyExc_Exception, NULL) < 0)
        return -1;
    if (add_exception2(m, &st->InvalidRequestError, "InvalidRequestError",
                       "Bad arguments, caught before any request is sent.", st->Uni1Error,
                       PyExc_ValueError, NULL) < 0)
        return -1;
    /* Wrong-typed arguments: caught by `except TypeError` as Python code
     * expects, and by `except InvalidRequestError` as the package promises
     * for every bad argument. */
    if (add_exception2(m, &st->InvalidRequestTypeError, "InvalidRequestTypeError",
                       "An argument of the wrong type, caught before any request is sent.",
                       st->InvalidRequestError, PyExc_TypeError, NULL) < 0)
        return -1;
    if (add_exception(m, &st->ConfigurationError, "ConfigurationError",
                      "Missing credentials or unusable settings.", st->Uni1Error, NULL) < 0)
        return -1;
    if (add_exception(m, &st->APIError, "APIError",
                      "The server answered with an error (status_code, reason, body, "
                      "retryable, trace_id).",
                      st->Uni1Error, api_attrs) < 0)
        return -1;
    /* A hand-made APIError is not known to be retryable. */
    if (PyObject_SetAttrString(st->APIError, "retryable", Py_False) < 0)
        return -1;
    if (add_exception(m, &st->AuthenticationError, "AuthenticationError",
                      "HTTP 401: the credentials were refused.", st->APIError, NULL) < 0 ||
        add_exception(m, &st->PermissionDeniedError, "PermissionDeniedError",
                      "HTTP 403: not allowed.", st->APIError, NULL) < 0 ||
        add_exception(m, &st->NotFoundError, "NotFoundError", "HTTP 404: no such resource.",
                      st->APIError, NULL) < 0 ||
        add_exception(m, &st->RateLimitError, "RateLimitError",
                      "HTTP 429: slow down (retry_after: seconds, or None).", st->APIError,
                      rate_attrs) < 0 ||
        add_exception(m, &st->ServerError, "ServerError", "HTTP 5xx: the server failed.",
                      st->APIError, NULL) < 0)
        return -1;
    if (add_exception2(m, &st->ConnectionError, "ConnectionError",
                       "A network failure after retries.", st->Uni1Error, PyExc_ConnectionError,
                       NULL) < 0 ||
        add_exception2(m, &st->TimeoutError, "TimeoutError", "A deadline passed.", st->Uni1Error,
                       PyExc_TimeoutError, NULL) < 0)
        return -1;
    if (add_exception(m, &st->SubmissionUncertainError, "SubmissionUncertainError",
                      "A generate request may have reached the server and no job could be "
                      "found for it (request: the body sent; sent_at: ISO 8601 UTC).",
                      st->Uni1Error, uncertain_attrs) < 0)
        return -1;
    if (add_exception(m, &st->JobError, "JobError",
                      "A job ended badly (job, and error/hint from the server).", st->Uni1Error,
                      job_attrs) < 0 ||
        add_exception(m, &st->JobFailedError, "JobFailedError", "The job ended in failure.",
                      st->JobError, NULL) < 0 ||
        add_exception(m, &st->JobCanceledError, "JobCanceledError", "The job was canceled.",
                      st->JobError, NULL) < 0)
        return -1;
    return 0;
}
