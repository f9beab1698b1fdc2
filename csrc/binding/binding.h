/*
 * binding.h - private to csrc/binding: the CPython side of scenario_uni1.
 *
 * The binding is the only code that includes Python.h. It is built against
 * the limited API (abi3, 3.10+), so it never touches object internals: every
 * type is a heap type made from a spec, every access goes through functions.
 *
 * FILES
 *   module.c  module init/exec, module state, module functions
 *             (validate_generate, _rebuild_job).
 *   errors.c  the exception classes, and the one function that maps a failed
 *             core call to an exception (from uni1_error's fields only).
 *   args.c    argument parsing for vectorcall methods, and the conversions of
 *             Python arguments to C buffers the binding owns.
 *   call.c    one network call: session acquire/release, the GIL released
 *             around the core, the interrupt callback (Ctrl-C, Job.cancel(),
 *             Client.close()) and log forwarding.
 *   client.c  the Client type (final: scenario_uni1.Client holds one).
 *   job.c     the Job type (final; made only by the binding; scenario_uni1.Job
 *             holds one).
 *   jobbind.c a Job's client (none for a job rebuilt from its state until
 *             the glue binds one), its state and copies.
 *   results.c Job.images() (raw image fields: the glue makes the Images) and
 *             Job.download().
 *
 * The binding never calls into the glue: it takes plain values and, for
 * one call, the callables passed as its arguments (progress, skip,
 * on_submitted, on_ready, done callbacks).
 *
 * THREADS AND THE GIL
 *   abi3 extensions only load in interpreters with a GIL, and the binding
 *   relies on it: the fields of ClientObject and JobObject are read and
 *   written only while holding the GIL. The core runs with the GIL released
 *   and sees only C buffers the binding copied before releasing it.
 */
#ifndef UNI1_BINDING_H
#define UNI1_BINDING_H

#include <Python.h>
#include <pthread.h>

#include "uni1.h"

/* ---- module state ------------------------------------------------------- */

typedef struct py_state {
    PyTypeObject *client_type;
    PyTypeObject *job_type;
    PyTypeObject *generation_type;
    PyTypeObject *deadline_type;

    PyObject *Uni1Error;
    PyObject *InvalidRequestError;
    PyObject *InvalidRequestTypeError; /* (InvalidRequestError, TypeError) */
    PyObject *ConfigurationError;
    PyObject *APIError;
    PyObject *AuthenticationError;
    PyObject *PermissionDeniedError;
    PyObject *NotFoundError;
    PyObject *RateLimitError;
    PyObject *ServerError;
    PyObject *ConnectionError;
    PyObject *TimeoutError;
    PyObject *SubmissionUncertainError;
    PyObject *JobError;
    PyObject *JobFailedError;
    PyObject *JobCanceledError;

    /* Imported on first use (import time matters to CLI users). */
    PyObject *json_loads;
    PyObject *path_type; /* pathlib.Path */
    PyObject *os_makedirs;
} py_state;

/* ---- objects ------------------------------------------------------------ */

typedef struct ClientObject {
    PyObject_HEAD uni1_client *core; /* NULL before __init__ and after close() */
    int closed;
    Py_ssize_t active;           /* calls in flight; the core is freed when the
                                    last one ends after close() */
    unsigned long long requests; /* sum of the per-session request counters
                                    over finished calls */
    double timeout;
    int max_retries;
    PyObject *base_url;   /* str, kept after close() for repr */
    PyObject *project_id; /* str or None */
    PyObject *logger;     /* logging.Logger when DEBUG was enabled at
                             creation, else NULL */
} ClientObject;

typedef struct JobObject {
    PyObject_HEAD ClientObject *client; /* strong; NULL for a job rebuilt from its
                                           state until Job._bind (jobbind.c) */
    uni1_job job;                       /* owned; updated only with the GIL held */
    double cost;                        /* creative units, -1 when unknown */
    PyObject *raw_cache;                /* json.loads(job.raw_json), or NULL */
    unsigned long cancel_gen;           /* bumped by cancel(): stops running waits */
    int waiting;                        /* a wait() runs (refuse a second one) */
    PyObject *weakrefs;                 /* weakref list (caches hold jobs weakly) */
} JobObject;

/* ---- calls into the core ------------------------------------------------ */

enum py_stop { PY_STOP_NONE = 0, PY_STOP_CANCEL, PY_STOP_CLOSED };

/* A core function run on the client's engine for a blocking call: it gets
 * the call's session and its argument, and returns the status. It runs on
 * the engine thread: it must not touch Python objects. */
typedef uni1_status (*py_core_fn)(uni1_session *s, void *arg);

typedef struct py_call {
    py_state *st;
    ClientObject *client; /* strong for the duration of the call */
    uni1_session *s;
    uint64_t requests_at_start;
    /* wait() only */
    JobObject *job;     /* borrowed: the caller holds it */
    PyObject *progress; /* callable or NULL (borrowed) */
    unsigned long cancel_gen;
    enum py_stop stop;
    /* py_call_run */
    py_core_fn fn;
    void *arg;
    uni1_status rc;
    pthread_mutex_t mu; /* guards the job the engine reports */
    uni1_job polled;    /* the last poll of a wait(), from the engine */
    int polled_pending;
    int mu_ready;
} py_call;

/* Extra context for mapping a failure to an exception. */
typedef struct py_error_extra {
    PyObject *job;                      /* JobError.job, or NULL */
    const uni1_generate_params *params; /* SubmissionUncertainError.request */
    enum py_stop stop;                  /* why the binding interrupted */
} py_error_extra;

/* Acquires a session of client (raising ConfigurationError when closed)
 * with the deadline (absolute uni1_monotonic() time, 0 for none). -1 with an
 * exception set on failure. */
int py_call_begin(py_call *c, py_state *st, ClientObject *client, double deadline);
/* THE way a blocking call reaches the network: fn(session, arg) runs as a
 * task on the client's engine while this thread waits with the GIL released,
 * waking every PY_WAIT_SLICE seconds to run signal handlers (Ctrl-C), to
 * look for a cancel() of the job waited on or a close() of the client, and to
 * hand wait() progress to Python; any of these cancels the task, which then
 * ends at once. Returns fn's status (a pending Python exception, if any, is
 * left set: it wins, pycurl's rule). */
uni1_status py_call_run(py_call *c, py_core_fn fn, void *arg);
/* THE wait with the GIL released, under every blocking call (py_call_run,
 * Generation.result, wait_first): until one of tasks is done, in slices of
 * at most PY_WAIT_SLICE; between slices, with the GIL, tick(userdata) (NULL:
 * none) may ask to stop. The index of a task done, PY_WAIT_DEADLINE once the
 * deadline (absolute uni1_monotonic() time, 0: none) passed, or
 * PY_WAIT_STOPPED when tick returned nonzero. */
#define PY_WAIT_DEADLINE (-1)
#define PY_WAIT_STOPPED (-2)
int py_wait(uni1_task *const *tasks, size_t n, double deadline, int (*tick)(void *),
            void *userdata);
/* The blocking core calls of the binding, each through py_call_run
 * (corecalls.c): the same arguments as the core function, with the call in
 * place of the session. */
uni1_status py_run_generate(py_call *c, const uni1_generate_params *p, const char *const *exclude,
                            size_t n_exclude, uni1_job *job, double *cost);
uni1_status py_run_find_job(py_call *c, const uni1_generate_params *p, double sent_at,
                            const char *const *exclude, size_t n_exclude, uni1_job *job,
                            int *found);
uni1_status py_run_get_job(py_call *c, const char *id, uni1_job *job);
uni1_status py_run_list_jobs(py_call *c, const uni1_list_query *q, uni1_job_list *list);
uni1_status py_run_cancel_job(py_call *c, const char *id);
/* uni1_wait_job with the call's progress hand-over (c->job, c->progress). */
uni1_status py_run_wait_job(py_call *c, uni1_job *job);
uni1_status py_run_get_asset(py_call *c, const char *id, uni1_asset *asset);
uni1_status py_run_fetch_to_memory(py_call *c, uni1_asset *asset, uni1_buffer *out,
                                   char *content_type, size_t ct_len);
uni1_status py_run_fetch_to_dir(py_call *c, const uni1_asset *assets, size_t n, const char *dir,
                                const char *const *names, int overwrite, char *const *paths,
                                size_t path_len);

/* Maps the failed call to an exception (or keeps a pending one). Must be
 * called before py_call_finish: it reads the session error. Returns NULL. */
PyObject *py_call_fail(py_call *c, uni1_status status, PyObject *job,
                       const uni1_generate_params *params);
/* Adds up the request count, releases the session, frees the core of a
 * closed client once its last call ends. */
void py_call_finish(py_call *c);

/* The core's progress callback for uni1_wait_job (call.c); userdata is the
 * py_call. Runs on the engine thread: it only records the job. */
int py_wait_progress(void *userdata, const uni1_job *job);
/* How often a wait wakes to look for signals (Ctrl-C within this). */
#define PY_WAIT_SLICE 0.05
/* The exit gate (call.c): an engine thread calls Python only between
 * py_gate_enter (which takes the GIL, or returns 0 once the interpreter is
 * exiting: then it must not) and py_gate_leave. */
int py_gate_enter(PyGILState_STATE *gs);
void py_gate_leave(PyGILState_STATE gs);
/* In a fork()ed child: no engine thread is inside. */
void py_gate_forked_child(void);
/* _core._at_exit: closes the gate and waits for the threads inside. */
PyObject *py_at_exit(PyObject *module, PyObject *unused);
/* The core's log callback; userdata is the ClientObject (call.c). */
void py_log_forward(void *userdata, uni1_log_level level, const char *message);

/* ---- errors.c ------------------------------------------------------------ */

/* THE mapping from a failed core call to a Python exception. If a Python
 * exception is already pending (Ctrl-C, a callback that raised) it wins and
 * nothing is mapped. Always returns NULL. */
PyObject *py_raise_core(py_state *st, uni1_status status, const uni1_error *err,
                        const py_error_extra *extra);
/* Creates the exception classes into st and adds them to the module m. */
int py_errors_init(PyObject *m, py_state *st);

/* ---- module.c ------------------------------------------------------------ */

/* json.loads(buf[:len]) */
PyObject *py_json_loads(py_state *st, const char *buf, size_t len);
/* pathlib.Path(os.fsdecode(fs_path)) (the stdlib's type, imported on first use). */
PyObject *py_path(py_state *st, const char *fs_path);
/* A str from UTF-8 the server sent (invalid bytes replaced). */
PyObject *py_str(const char *s);
PyObject *py_str_or_none(const char *s);

/* ---- args.c ------------------------------------------------------------- */

typedef struct py_argspec {
    const char *fname;
    const char *const *names; /* NULL-terminated */
    int n_positional;         /* names[0..n_positional) may be positional */
    int n_required;           /* names[0..n_required) must be given */
} py_argspec;

/* Fills out[i] with a borrowed reference to argument names[i], or NULL when
 * it was not given. TypeError on unknown, duplicate, missing or surplus
 * arguments. */
int py_parse_args(const py_argspec *spec, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames, PyObject **out);

/* One helper per rule of argument checking (args.c). `kind` picks the
 * exception: a setting of Client() raises ConfigurationError; an argument of
 * a call raises InvalidRequestError, or InvalidRequestTypeError (an
 * InvalidRequestError and a TypeError) for a wrong type. The helpers taking an
 * optional argument return 1 when a value was given, 0 when it was absent
 * (NULL, or None where allowed) leaving *out as it was, -1 with an exception. */
typedef enum py_arg_kind { PY_ARG_CALL = 0, PY_ARG_SETTING } py_arg_kind;
#define PY_ALLOW_NONE 1
#define PY_ALLOW_INF 2

/* Text: a str with no NUL and no lone surrogate, as a malloc'd UTF-8 copy.
 * NULL, or None when allow_none, gives *out = NULL. 0 or -1. */
int py_arg_text(py_state *st, py_arg_kind kind, PyObject *o, const char *what, int allow_none,
                char **out);
/* Seconds: a real number, never a bool; not NaN, not negative, not too large
 * for a double; infinite only with PY_ALLOW_INF. */
int py_arg_seconds(py_state *st, py_arg_kind kind, PyObject *o, const char *what, int flags,
                   double *out);
/* A count: an int (__index__), never a bool; within lo..hi (a huge int is out
 * of range, not an OverflowError). */
int py_arg_count(py_state *st, py_arg_kind kind, PyObject *o, const char *what, int flags, long lo,
                 long hi, long *out);
/* A flag: True or False (None is absent). */
int py_arg_flag(py_state *st, py_arg_kind kind, PyObject *o, const char *what, int *out);
/* A path: str, bytes or os.PathLike with no NUL, as bytes in the filesystem
 * encoding (new reference in *out). 0 or -1. */
int py_arg_path(py_state *st, py_arg_kind kind, PyObject *o, const char *what, PyObject **out);

/* py_arg_text for a call argument. */
int py_copy_str(py_state *st, PyObject *o, const char *what, int allow_none, char **out);
/* The absolute deadline (uni1_monotonic() time, 0: none) of a timeout
 * argument: a _core.Deadline as it is, else seconds from now (py_arg_seconds;
 * None or infinite: none). 0 or -1 (deadline.c). */
int py_deadline(py_state *st, PyObject *timeout, double *deadline);
extern PyType_Spec py_deadline_spec;
/* The qualified name of type(o), for messages (new reference). */
PyObject *py_type_name(PyObject *o);

/* The settings of Client(), converted (py_arg_* rules, ConfigurationError)
 * into core options that point into the strings owned here. */
typedef struct py_settings {
    char *api_key, *api_secret, *bearer_token, *base_url, *project_id;
    char *user_agent, *ca_bundle, *proxy, *ca_fallback;
    uni1_options options;
} py_settings;
int py_settings_init(py_state *st, py_settings *cfg, PyObject *args, PyObject *kwds);
void py_settings_free(py_settings *cfg);

/* The arguments of a generation, copied into C memory. */
typedef struct py_gen_args {
    char *prompt;
    char *source;
    char *aspect_ratio;
    char **refs;
    size_t n_refs;
    uni1_generate_params params;
} py_gen_args;

/* Any of the objects may be NULL (argument absent: its default). */
int py_gen_args_init(py_state *st, py_gen_args *g, PyObject *prompt, PyObject *source,
                     PyObject *image_refs, PyObject *aspect_ratio, PyObject *output_format,
                     PyObject *web_search);
/* InvalidRequestError when the request breaks the API contract. */
int py_gen_args_validate(py_state *st, const py_gen_args *g);
void py_gen_args_free(py_gen_args *g);

/* ---- client.c / job.c --------------------------------------------------- */

extern PyType_Spec py_client_spec;
extern PyType_Spec py_job_spec;

/* ConfigurationError (-1) unless the client was initialised and not closed. */
int py_client_check_open(py_state *st, ClientObject *client);
/* Frees the core client (GIL released while libcurl closes connections). */
void py_client_free_core(ClientObject *self);

/* A new Job taking over *job (left cleared, also on failure), on client
 * (NULL: bound to none until Job._bind). */
PyObject *py_job_new(py_state *st, ClientObject *client, uni1_job *job, double cost);
/* The job's client, refused (ConfigurationError) once closed, or a
 * RuntimeError for a job bound to none (jobbind.c). Borrowed; NULL with an
 * exception. */
ClientObject *py_job_client(py_state *st, JobObject *self);
/* Job._bind, Job._state, __copy__ and __deepcopy__ (jobbind.c). */
PyObject *py_job_bind(PyObject *op, PyObject *client);
PyObject *py_job_state(PyObject *op, PyObject *unused);
PyObject *py_job_copy(PyObject *op, PyObject *unused);
PyObject *py_job_deepcopy(PyObject *op, PyObject *memo);

/* Client.get_asset (assets.c), METH_METHOD|METH_FASTCALL|METH_KEYWORDS. */
PyObject *py_client_get_asset(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                              PyObject *kwnames);

/* Job.images() and Job.download() (results.c), same calling convention. */
PyObject *py_job_images(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                        PyObject *kwnames);
PyObject *py_job_download(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                          PyObject *kwnames);
/* Shared by job.c and results.c: the last job JSON as a dict; the wait loop
 * (0, or -1 with an exception). */
typedef char py_id[UNI1_ID_MAX];
PyObject *py_job_raw_dict(JobObject *self, py_state *st);
int py_job_wait_impl(JobObject *self, py_state *st, double deadline, PyObject *progress);

/* ---- generation.c ---------------------------------------------------------- */

extern PyType_Spec py_generation_spec;
/* Client._start, ._engine_fd, ._engine_drain; module-level wait_first and
 * _at_exit. */
PyObject *py_client_start(PyObject *op, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                          PyObject *kwnames);
/* A Generation running gs on the client's engine (NULL with an exception). */
PyObject *py_generation_new(py_state *st, ClientObject *client, const uni1_gen_spec *gs, int fetch,
                            int to_files, PyObject *attach, PyObject *on_submitted,
                            PyObject *on_ready);
PyObject *py_client_engine_fd(PyObject *op, PyObject *unused);
PyObject *py_client_engine_drain(PyObject *op, PyObject *unused);
PyObject *py_wait_first(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames);
PyObject *py_release_spare_buffers(PyObject *module, PyObject *unused);
/* results.c: the fields of an image of fetched bytes, a tuple (data,
 * mime_type, asset_id, width, height) the glue makes an Image of; the file
 * type a job asked for. */
PyObject *py_image_fields(const uni1_asset *asset, const uni1_buffer *buf,
                          const char *content_type);
void py_job_fallback_ext(JobObject *self, py_state *st, char *ext, size_t n);

#endif
