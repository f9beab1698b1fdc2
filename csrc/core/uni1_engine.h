/* scenario_uni1 core: the engine and generations (part of uni1.h, which
 * includes this file; include uni1.h, not this one).
 *
 * Design: what runs where.
 *   - The caller's threads only queue work and wait (or poll a file
 *     descriptor): uni1_task_start, uni1_generation_start and the waits never
 *     do network I/O.
 *   - One engine thread per client owns one libcurl multi handle (so every
 *     connection of the client is shared), a timer heap and a run queue.
 *   - Every operation is a task run as a fiber on that thread. The protocol
 *     code is the same sequential code a caller's thread runs with its own
 *     session: where it waits for a transfer or a pause, the session's
 *     transfer loop (uni1__loop_wait) parks the fiber and the engine runs the
 *     others. One implementation of each rule, whoever calls it.
 *   - A task's end wakes the threads waiting for that task (each waiter
 *     links itself to the tasks it waits for) and a pipe per client (event
 *     loops: uni1_engine_fd).
 *   - At most UNI1_ENGINE_HANDLES tasks of an engine hold libcurl easy
 *     handles at once; the others wait their turn before their first
 *     request, so 10,000 tasks started together stay small.
 * Why fibers rather than hand-written state machines: the exactly-once
 * reconciliation, the multipart upload and the download with resume are
 * long sequences of steps with retries and early exits; written once as
 * straight code they are what the tests and the fuzzers have checked, and a
 * second, event-driven copy of each would be the kind of duplicate that
 * drifts. The cost is a stack per running task (address space reserved,
 * pages touched only as deep as the task goes). */
#ifndef UNI1_ENGINE_API_H
#define UNI1_ENGINE_API_H

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* The engine: many operations in flight from threads that never block      */
/* ------------------------------------------------------------------------ */

/* Every client has an engine: one thread, started at the client's first task,
 * that runs every task of the client and drives all their transfers on one
 * libcurl multi handle (connections are shared between tasks). A task is a
 * function given a session, like a call on the caller's own thread; it may
 * call every blocking function of this header on that session, and where
 * such a function would wait (a transfer, a pause between polls or retries)
 * the task gives the engine thread to the others instead. So the same code
 * serves both uses: a caller's thread, or 10,000 tasks on one thread.
 *
 * Tasks run as fibers: each has a stack of its own (UNI1_FIBER_STACK of
 * address space; memory only for the pages it touches) while it runs, from
 * its start to its end. A task's function must not block on anything but the
 * session (no sleep(), no locks held across a call into this library).
 *
 * Threading: uni1_task_start, _cancel, _done, _release, uni1_tasks_wait,
 * uni1_engine_fd and _drain may be called from any thread. The task function
 * and the done callback run on the engine thread, with every signal blocked.
 *
 * Ownership: uni1_task_start returns a reference the caller gives back with
 * uni1_task_release (at any time: the task runs on regardless). The
 * userdata belong to the caller and must outlive the task's end: the done
 * callback is their last use, and it may still run after uni1_task_done
 * turned 1 (uni1_client_free returns only once every callback ran).
 *
 * Deadline: an absolute uni1_monotonic() time (0: none), the session's
 * deadline inside the task. Cancellation: uni1_task_cancel makes every wait
 * of the task return UNI1_ERR_INTERRUPTED at once.
 *
 * Fork: a child has no engine thread. Its first task starts a new engine;
 * tasks of the parent are done in the child (uni1_task_forked) and their
 * function never ends there. Closing: uni1_client_free cancels every task and
 * waits for them to end; it may be called from a done callback of one of the
 * client's own tasks (the engine thread then finishes the others and exits
 * by itself), never from inside a task function. */
typedef struct uni1_task uni1_task;
/* s is NULL only when the engine could not give the task a session or a
 * stack (out of memory): the function must then record that and return. */
typedef void (*uni1_task_fn)(uni1_session *s, void *userdata);
/* Called on the engine thread once the function returned and the task is
 * done (uni1_task_done is 1 and waiters are woken before this is called: a
 * waiter may see the task done while its done callback still runs, so what
 * the callback uses must be kept alive by the callback's own means, e.g. a
 * reference count, not by the waiter). */
typedef void (*uni1_task_done_fn)(uni1_task *t, void *userdata);

/* Queues fn(session, userdata) on the client's engine; no I/O on the
 * calling thread. NULL when out of memory, when no thread could be started,
 * or when the client is being freed. */
uni1_task *uni1_task_start(uni1_client *c, uni1_task_fn fn, void *userdata, double deadline,
                           uni1_task_done_fn done, void *done_userdata);
/* The same on a session the caller holds (uni1_session_acquire) and lends
 * to the task: the task uses it, with its deadline, and leaves it (with its
 * error and request count) to the caller, who must not touch it until the
 * task is done. This is how a blocking call of one thread runs on the
 * engine: start it on the caller's session, then wait for it. */
uni1_task *uni1_task_start_on(uni1_session *s, uni1_task_fn fn, void *userdata,
                              uni1_task_done_fn done, void *done_userdata);
int uni1_task_done(const uni1_task *t);
/* 1 when t was started by the parent of this (forked) process. */
int uni1_task_forked(const uni1_task *t);
void uni1_task_cancel(uni1_task *t);
void uni1_task_release(uni1_task *t);
/* Blocks until one of tasks[0..n) is done or `seconds` passed: its index,
 * or -1. Any thread, tasks of any clients. */
int uni1_tasks_wait(uni1_task *const *tasks, size_t n, double seconds);
/* A file descriptor that becomes readable once a task of the client ended
 * since the last uni1_engine_drain (for event loops: poll it, drain it, then
 * look at uni1_task_done of the tasks you wait for). -1 when out of memory.
 * Owned by the client. */
int uni1_engine_fd(uni1_client *c);
void uni1_engine_drain(uni1_client *c);
/* Download buffers of finished transfers are kept for the next ones (a few,
 * process-wide) and given back when an engine goes idle; this gives them
 * back now. Any thread. */
void uni1_release_spare_buffers(void);

/* ------------------------------------------------------------------------ */
/* Generations: the whole pipeline of one image request, on the engine      */
/* ------------------------------------------------------------------------ */

/* A generation uploads the local inputs, submits the request (with
 * uni1_generate's exactly-once rules), waits for the job and fetches its
 * images into memory or a directory: every step as one engine task
 * (pipeline.c). Its state can be read from any thread at any time; its
 * results once it is done. */
typedef struct uni1_gen_input {
    const char *asset_id;      /* an existing asset: nothing to upload; or */
    const unsigned char *data; /* bytes to upload (copied at start); or */
    size_t len;
    const char *path;             /* a file to upload (opened in the task) */
    const char *name, *mime_type; /* for uploads */
} uni1_gen_input;

/* What a generation does: the whole pipeline, or only its first steps (the
 * engine's way to upload, or to get a quote, without blocking a thread). */
typedef enum uni1_gen_mode {
    UNI1_GEN_RUN = 0, /* upload, submit, wait, fetch */
    UNI1_GEN_UPLOAD,  /* upload the inputs: uni1_generation_input_asset */
    UNI1_GEN_ESTIMATE /* upload, then the dry run: uni1_generation_cost */
} uni1_gen_mode;

typedef struct uni1_gen_spec {
    uni1_gen_mode mode;
    const char *prompt;
    int source;            /* index into inputs, or -1 */
    const int *image_refs; /* indexes into inputs */
    size_t n_image_refs;
    const char *aspect_ratio;
    uni1_format output_format;
    int web_search;
    const uni1_gen_input *inputs; /* each uploaded at most once */
    size_t n_inputs;
    const char *job_id;       /* attach: no upload, no POST; the wait starts here */
    int fetch;                /* 0: done once the job is terminal (no download) */
    const char *download_dir; /* NULL: images into memory */
    int overwrite;
    double sent_after;          /* > 0 (Unix time): a POST of this request may
                                   have been sent then by a process that died;
                                   look for its job (request_timeout + settle
                                   window after it) before sending */
    const char *const *exclude; /* job ids never to adopt */
    size_t n_exclude;
    const char *fallback_ext; /* "png", "jpg", "webp": the file type when the
                                 asset record gives none (attach); NULL: the
                                 request's output_format */
    double deadline;          /* absolute uni1_monotonic() time, 0: none */
} uni1_gen_spec;

typedef enum uni1_gen_stage {
    UNI1_GEN_PENDING = 0,
    UNI1_GEN_UPLOADING,
    UNI1_GEN_SUBMITTING,
    UNI1_GEN_WAITING, /* the job's own status is in the snapshot */
    UNI1_GEN_DOWNLOADING,
    UNI1_GEN_DONE,
    UNI1_GEN_FAILED,
    UNI1_GEN_CANCELED
} uni1_gen_stage;

/* UNI1_GEN_READY: the inputs are uploaded and the request is about to be
 * sent (never for a generation started with sent_after, nor attached); a
 * journal records the asset ids and the time now, before the POST.
 * UNI1_GEN_SUBMITTED: the job id is known, before the wait. UNI1_GEN_ENDED:
 * done, after the waiters woke. */
typedef enum uni1_gen_event {
    UNI1_GEN_SUBMITTED = 1,
    UNI1_GEN_ENDED,
    UNI1_GEN_READY
} uni1_gen_event;

typedef struct uni1_generation uni1_generation;
/* Called on the engine thread: SUBMITTED once the job id is known (before
 * the wait), ENDED once the generation is done (after waiters woke). */
typedef void (*uni1_gen_event_fn)(uni1_generation *g, uni1_gen_event ev, void *userdata);

typedef struct uni1_gen_snapshot {
    uni1_gen_stage stage;
    char job_id[UNI1_ID_MAX]; /* "" before submission */
    char job_status[32];      /* the job's status while waiting */
    double progress;          /* 0..1: the job's, then the download's */
    int done;
} uni1_gen_snapshot;

/* One output once done: the asset record and either the file written
 * (path) or the bytes (data, content_type). Owned by the generation. */
typedef struct uni1_gen_output {
    uni1_asset asset;
    char *path;
    uni1_buffer data;
    char content_type[64];
} uni1_gen_output;

/* Starts a generation (no I/O on the calling thread; the spec is copied).
 * NULL when out of memory; *status says why otherwise (UNI1_ERR_INVALID for
 * a spec that breaks the contract, with the message in err). */
uni1_generation *uni1_generation_start(uni1_client *c, const uni1_gen_spec *spec,
                                       uni1_gen_event_fn on_event, void *userdata,
                                       uni1_status *status, char *err, size_t errlen);
void uni1_generation_snapshot(uni1_generation *g, uni1_gen_snapshot *out);
/* The engine task (for uni1_tasks_wait; owned by the generation). */
uni1_task *uni1_generation_task(uni1_generation *g);
/* Stops the pipeline: nothing more is downloaded; a submitted job still
 * running is cancelled on the server (only one it submitted: a job it was
 * asked to follow, spec.job_id, is left alone). 0 when it was already done. */
int uni1_generation_cancel(uni1_generation *g);
/* Once done (uni1_task_done): UNI1_OK and the outputs, or the failure with
 * its error (owned by the generation). The job is the last one seen (id
 * empty when nothing was submitted). */
uni1_status uni1_generation_status(const uni1_generation *g);
const uni1_error *uni1_generation_error(const uni1_generation *g);
const uni1_job *uni1_generation_job(const uni1_generation *g);
/* The creative units the submission (or, UNI1_GEN_ESTIMATE, the quote)
 * gave; -1 when unknown. */
double uni1_generation_cost(const uni1_generation *g);
/* The asset id the request sends as its source (which -1) or as image_refs
 * entry `which`: from the UNI1_GEN_READY event on (on the engine thread), or
 * once done; NULL before, or when there is none. */
const char *uni1_generation_request_asset(const uni1_generation *g, int which);
/* The asset id of input i once done (given or uploaded), else NULL. */
const char *uni1_generation_input_asset(const uni1_generation *g, size_t i);
size_t uni1_generation_n_outputs(const uni1_generation *g);
const uni1_gen_output *uni1_generation_output(const uni1_generation *g, size_t i);
/* Frees a generation; one still running is cancelled first and freed when
 * its task ends (no event is delivered after this call). */
void uni1_generation_free(uni1_generation *g);
/* The file extension for a MIME type ("png", "jpg", "webp"), else fallback. */
const char *uni1_extension_for(const char *mime, const char *fallback);

#ifdef __cplusplus
}
#endif
#endif /* UNI1_ENGINE_API_H */
