/* Generations (uni1.h, "Generations"): upload, submit, wait and fetch as one
 * engine task. Each step is the blocking function that does it everywhere
 * else (uni1_upload_image/_file, uni1_generate_excluding, uni1_wait_job,
 * uni1_get_asset, the downloads of files.c); in the engine their waits give
 * the thread to other tasks. The state other threads read (stage, job
 * status, progress) is kept under the generation's lock. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "platform.h"
#include "session.h"
#include "uni1_internal.h"

/* What POST /assets takes inline (the contract: 3.5 MB of raw image). */
#define UNI1_INLINE_UPLOAD_MAX 3500000

typedef struct gen_input {
    char *asset_id; /* given, or set once uploaded */
    unsigned char *data;
    size_t len;
    char *path, *name, *mime_type;
} gen_input;

struct uni1_generation {
    uni1_client *client;
    /* Stored by the caller when uni1_task_start returns, and by the task
     * itself (run, task_ended): the task may reach an event before the
     * caller's store, and the event's callback reads it. */
    _Atomic(uni1_task *) task;
    uni1_gen_mode mode;
    uni1_gen_event_fn on_event;
    void *userdata;
    atomic_int refs;
    atomic_int user_cancel;
    /* The spec, copied. */
    char *prompt, *aspect_ratio, *job_id, *download_dir, *fallback_ext;
    int source;
    int *refs_idx;
    size_t n_refs;
    uni1_format output_format;
    int web_search, fetch, overwrite;
    double sent_after;
    char **exclude;
    size_t n_exclude;
    gen_input *inputs;
    size_t n_inputs;
    /* Under mu: what other threads read while it runs. */
    pthread_mutex_t mu;
    uni1_gen_snapshot snap;
    /* Written by the task; read by others once done. */
    uni1_job job;
    double cost;
    uni1_status status;
    uni1_error err;
    uni1_gen_output *outputs;
    size_t n_outputs;
};

static uni1_task *task_of(const uni1_generation *g)
{
    return atomic_load(&((uni1_generation *)g)->task);
}

static char *dup_opt(const char *s, int *oom)
{
    if (!s)
        return NULL;
    char *d = uni1__strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

static void set_stage(uni1_generation *g, uni1_gen_stage stage, double progress)
{
    pthread_mutex_lock(&g->mu);
    g->snap.stage = stage;
    if (progress >= 0)
        g->snap.progress = progress;
    pthread_mutex_unlock(&g->mu);
}

static void publish_job(uni1_generation *g, const uni1_job *j)
{
    pthread_mutex_lock(&g->mu);
    snprintf(g->snap.job_id, sizeof g->snap.job_id, "%s", j->id);
    snprintf(g->snap.job_status, sizeof g->snap.job_status, "%s", j->status);
    g->snap.progress = j->progress;
    pthread_mutex_unlock(&g->mu);
}

static int on_poll(void *userdata, const uni1_job *job)
{
    publish_job(userdata, job);
    return 0;
}

/* ---- the steps ------------------------------------------------------------ */

static uni1_status upload_one(uni1_session *s, gen_input *in)
{
    uni1_asset a;
    memset(&a, 0, sizeof a);
    uni1_status st;
    if (in->data && in->len <= UNI1_INLINE_UPLOAD_MAX) {
        st = uni1_upload_image(s, in->data, in->len, in->name, in->mime_type, &a);
    } else {
        /* The multipart flow reads from a file: large bytes go to an
         * unnamed temporary one. */
        int fd = -1;
        FILE *tmp = NULL;
        long long size = 0;
        if (in->data) {
            tmp = uni1__tmpfile();
            if (!tmp || fwrite(in->data, 1, in->len, tmp) != in->len || fflush(tmp) != 0) {
                if (tmp)
                    fclose(tmp);
                return uni1__fail_os(s, errno, "upload %s: cannot write a temporary file",
                                     in->name);
            }
            fd = fileno(tmp);
            size = (long long)in->len;
            lseek(fd, 0, SEEK_SET);
        } else {
            fd = uni1__open_read(in->path);
            struct stat sb;
            if (fd < 0 || fstat(fd, &sb) != 0) {
                int e = errno;
                if (fd >= 0)
                    close(fd);
                return uni1__fail_os(s, e, "upload %s: cannot open the file", in->name);
            }
            size = (long long)sb.st_size;
        }
        st = uni1_upload_file(s, fd, size, in->name, in->mime_type, &a);
        if (tmp)
            fclose(tmp);
        else
            close(fd);
    }
    if (st == UNI1_OK) {
        in->asset_id = uni1__strdup(a.id);
        if (!in->asset_id)
            st = uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    }
    uni1_asset_clear(&a);
    return st;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A POST that a dead process may have sent at sent_after: its job can show
 * up in the list for as long as that process would have waited for the
 * answer plus the settle window; only a look after that proves nothing. */
static uni1_status find_or_send(uni1_session *s, uni1_generation *g, const uni1_generate_params *p)
{
    const char *const *ex = (const char *const *)g->exclude;
    if (g->sent_after > 0) {
        double window = s->client->request_timeout + s->client->settle_window;
        for (;;) {
            int found = 0;
            double looked_at = wall_now();
            uni1_status st =
                uni1_find_submitted_job(s, p, g->sent_after, ex, g->n_exclude, &g->job, &found);
            if (st != UNI1_OK)
                return st;
            if (found)
                return UNI1_OK;
            if (looked_at >= g->sent_after + window)
                break;
            double pause = g->sent_after + window - looked_at;
            if ((st = uni1__sleep(s, pause < 1.0 ? pause : 1.0)) != UNI1_OK)
                return st;
        }
    }
    return uni1_generate_excluding(s, p, ex, g->n_exclude, &g->job, &g->cost);
}

static uni1_status upload_inputs(uni1_session *s, uni1_generation *g)
{
    int uploads = 0;
    for (size_t i = 0; i < g->n_inputs; i++)
        uploads += !g->inputs[i].asset_id;
    if (uploads)
        set_stage(g, UNI1_GEN_UPLOADING, 0);
    for (size_t i = 0; i < g->n_inputs; i++) {
        if (g->inputs[i].asset_id)
            continue;
        uni1_status st = upload_one(s, &g->inputs[i]);
        if (st != UNI1_OK)
            return st;
    }
    return UNI1_OK;
}

/* Uploads, then sends the request (or, UNI1_GEN_ESTIMATE, asks its price). */
static uni1_status submit(uni1_session *s, uni1_generation *g)
{
    uni1_status up = upload_inputs(s, g);
    if (up != UNI1_OK || g->mode == UNI1_GEN_UPLOAD)
        return up;
    const char **refs = calloc(g->n_refs ? g->n_refs : 1, sizeof *refs);
    if (!refs)
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->n_refs; i++)
        refs[i] = g->inputs[g->refs_idx[i]].asset_id;
    uni1_generate_params p = {
        .prompt = g->prompt,
        .source = g->source >= 0 ? g->inputs[g->source].asset_id : NULL,
        .image_refs = refs,
        .n_image_refs = g->n_refs,
        .aspect_ratio = g->aspect_ratio,
        .output_format = g->output_format,
        .web_search = g->web_search,
    };
    set_stage(g, UNI1_GEN_SUBMITTING, 0);
    if (g->mode == UNI1_GEN_RUN && g->sent_after <= 0 && g->on_event)
        g->on_event(g, UNI1_GEN_READY, g->userdata);
    uni1_status st =
        g->mode == UNI1_GEN_ESTIMATE ? uni1_estimate(s, &p, &g->cost) : find_or_send(s, g, &p);
    free(refs);
    return st;
}

static const char *format_ext(uni1_format f)
{
    return f == UNI1_FORMAT_JPEG ? "jpg" : "png";
}

const char *uni1_extension_for(const char *mime, const char *fallback)
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
 * for, so the download checks the bytes against it (a proxy's HTML error
 * page is never kept as an image). */
static void expect_format(uni1_asset *a, const char *ext)
{
    if (strcmp(uni1_extension_for(a->mime_type, "bin"), "bin") != 0 ||
        strcmp(a->mime_type, "image/gif") == 0)
        return;
    const char *mime = strcmp(ext, "jpg") == 0    ? "image/jpeg"
                       : strcmp(ext, "webp") == 0 ? "image/webp"
                       : strcmp(ext, "png") == 0  ? "image/png"
                                                  : NULL;
    if (mime)
        snprintf(a->mime_type, sizeof a->mime_type, "%s", mime);
}

static uni1_status fetch(uni1_session *s, uni1_generation *g)
{
    size_t n = g->job.n_assets;
    set_stage(g, UNI1_GEN_DOWNLOADING, 0);
    if (n == 0)
        return UNI1_OK;
    g->outputs = calloc(n, sizeof *g->outputs);
    if (!g->outputs)
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    g->n_outputs = n;
    const char *fallback = g->fallback_ext ? g->fallback_ext : format_ext(g->output_format);
    for (size_t i = 0; i < n; i++) {
        uni1_asset *a = &g->outputs[i].asset;
        uni1_status st = uni1_get_asset(s, g->job.asset_ids[i], a);
        if (st != UNI1_OK)
            return st;
        if (!a->url)
            return uni1__fail(s, UNI1_ERR_PROTOCOL, "asset %s has no URL (status %s)", a->id,
                              a->status[0] ? a->status : "unknown");
        expect_format(a, fallback);
    }
    if (!g->download_dir) {
        for (size_t i = 0; i < n; i++) {
            uni1_gen_output *o = &g->outputs[i];
            uni1_status st = uni1_download_asset_to_buffer(s, &o->asset, &o->data, o->content_type,
                                                           sizeof o->content_type);
            if (st != UNI1_OK)
                return st;
            set_stage(g, UNI1_GEN_DOWNLOADING, (double)(i + 1) / (double)n);
        }
        return UNI1_OK;
    }
    char(*names)[UNI1_ID_MAX + 16] = calloc(n, sizeof *names);
    const char **name_ptrs = calloc(n, sizeof *name_ptrs);
    uni1_asset *assets = calloc(n, sizeof *assets);
    char **paths = calloc(n, sizeof *paths);
    size_t path_len = strlen(g->download_dir) + UNI1_ID_MAX + 24;
    uni1_status st = UNI1_OK;
    if (!names || !name_ptrs || !assets || !paths) {
        st = uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        uni1_asset *a = &g->outputs[i].asset;
        snprintf(names[i], sizeof names[i], "%s.%s", a->id,
                 uni1_extension_for(a->mime_type, fallback));
        name_ptrs[i] = names[i];
        assets[i] = *a; /* shallow: the records stay owned by outputs */
        paths[i] = g->outputs[i].path = calloc(1, path_len);
        if (!paths[i]) {
            st = uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    st = uni1_download_assets_to_dir(s, assets, n, g->download_dir, name_ptrs, g->overwrite, paths,
                                     path_len);
    if (st == UNI1_OK)
        set_stage(g, UNI1_GEN_DOWNLOADING, 1.0);
out:
    free(names);
    free(name_ptrs);
    free(assets);
    free(paths);
    return st;
}

static void keep_error(uni1_generation *g, const uni1_error *e)
{
    g->err = *e;
    g->err.body = NULL;
    g->err.body_len = 0;
    if (e->body) {
        g->err.body = uni1__memdup(e->body, e->body_len + 1);
        if (g->err.body)
            g->err.body_len = e->body_len;
    }
}

static void run_steps(uni1_session *s, uni1_generation *g)
{
    if (!s) {
        g->status = UNI1_ERR_NOMEM;
        g->err.status = UNI1_ERR_NOMEM;
        snprintf(g->err.message, sizeof g->err.message, "out of memory");
        return;
    }
    uni1_status st = UNI1_OK;
    if (uni1__stopped(s))
        st = uni1__fail(s, UNI1_ERR_INTERRUPTED, "interrupted");
    else if (g->job_id)
        snprintf(g->job.id, sizeof g->job.id, "%s", g->job_id);
    else if ((st = submit(s, g)) == UNI1_OK && g->mode != UNI1_GEN_RUN)
        goto out; /* an upload or a quote: nothing was submitted */
    else if (st == UNI1_OK) {
        publish_job(g, &g->job);
        if (g->on_event)
            g->on_event(g, UNI1_GEN_SUBMITTED, g->userdata);
    }
    if (st == UNI1_OK) {
        set_stage(g, UNI1_GEN_WAITING, -1);
        st = uni1_wait_job(s, &g->job, on_poll, g);
        publish_job(g, &g->job);
    }
    if (st == UNI1_OK && g->fetch)
        st = fetch(s, g);
out:
    g->status = st;
    if (st != UNI1_OK) {
        keep_error(g, uni1_session_error(s));
        int user = atomic_load(&g->user_cancel);
        /* Only a job this generation submitted: a job it was only asked to
         * follow (attach) is someone else's to cancel. */
        if (user && !g->job_id && g->job.id[0] && !uni1_job_state_is_terminal(g->job.state)) {
            /* The caller cancelled a running job: stop it on the server too
             * (it is paid for either way; a finished one costs nothing more
             * to leave alone). Bounded, and never retried long. */
            uni1__task_clear_cancel(s->task);
            s->deadline = uni1_monotonic() + 10.0;
            uni1_cancel_job(s, g->job.id);
        }
    }
}

/* The end state is published by the task itself, before the engine marks it
 * done and wakes the waiters: a waiter that sees the task done must find the
 * generation's snapshot done too (stage, and CANCELED that the binding turns
 * into the right exception), not the stage of a moment before. */
static void run(uni1_session *s, void *userdata)
{
    uni1_generation *g = userdata;
    if (s)
        atomic_store(&g->task, uni1__session_task(s));
    run_steps(s, g);
    pthread_mutex_lock(&g->mu);
    g->snap.done = 1;
    if (g->status == UNI1_OK) {
        g->snap.stage = UNI1_GEN_DONE;
        g->snap.progress = 1.0;
    } else {
        g->snap.stage = atomic_load(&g->user_cancel) ? UNI1_GEN_CANCELED : UNI1_GEN_FAILED;
    }
    pthread_mutex_unlock(&g->mu);
}

static void release(uni1_generation *g);

static void task_ended(uni1_task *t, void *userdata)
{
    uni1_generation *g = userdata;
    atomic_store(&g->task, t);
    pthread_mutex_lock(&g->mu);
    uni1_gen_event_fn cb = g->on_event;
    pthread_mutex_unlock(&g->mu);
    if (cb)
        cb(g, UNI1_GEN_ENDED, g->userdata);
    release(g);
}

/* ---- life ----------------------------------------------------------------- */

static void release(uni1_generation *g)
{
    if (atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    free(g->prompt);
    free(g->aspect_ratio);
    free(g->job_id);
    free(g->download_dir);
    free(g->fallback_ext);
    free(g->refs_idx);
    for (size_t i = 0; i < g->n_exclude; i++)
        free(g->exclude[i]);
    free(g->exclude);
    for (size_t i = 0; i < g->n_inputs; i++) {
        free(g->inputs[i].asset_id);
        free(g->inputs[i].data);
        free(g->inputs[i].path);
        free(g->inputs[i].name);
        free(g->inputs[i].mime_type);
    }
    free(g->inputs);
    for (size_t i = 0; i < g->n_outputs; i++) {
        uni1_asset_clear(&g->outputs[i].asset);
        free(g->outputs[i].path);
        uni1_buffer_clear(&g->outputs[i].data);
    }
    free(g->outputs);
    uni1_job_clear(&g->job);
    free(g->err.body);
    if (task_of(g))
        uni1_task_release(task_of(g));
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static int copy_spec(uni1_generation *g, const uni1_gen_spec *sp)
{
    int oom = 0;
    g->prompt = dup_opt(sp->prompt, &oom);
    g->aspect_ratio = dup_opt(sp->aspect_ratio, &oom);
    g->job_id = dup_opt(sp->job_id, &oom);
    g->download_dir = dup_opt(sp->download_dir, &oom);
    g->fallback_ext = dup_opt(sp->fallback_ext, &oom);
    g->mode = sp->mode;
    g->source = sp->source;
    g->output_format = sp->output_format;
    g->web_search = sp->web_search;
    g->fetch = sp->fetch;
    g->overwrite = sp->overwrite;
    g->sent_after = sp->sent_after;
    g->n_refs = sp->n_image_refs;
    g->refs_idx = calloc(g->n_refs ? g->n_refs : 1, sizeof *g->refs_idx);
    g->exclude = calloc(sp->n_exclude ? sp->n_exclude : 1, sizeof *g->exclude);
    g->inputs = calloc(sp->n_inputs ? sp->n_inputs : 1, sizeof *g->inputs);
    if (!g->refs_idx || !g->exclude || !g->inputs)
        return -1;
    if (g->n_refs)
        memcpy(g->refs_idx, sp->image_refs, g->n_refs * sizeof *g->refs_idx);
    for (size_t i = 0; i < sp->n_exclude; i++, g->n_exclude++)
        g->exclude[i] = dup_opt(sp->exclude[i], &oom);
    for (size_t i = 0; i < sp->n_inputs; i++, g->n_inputs++) {
        const uni1_gen_input *in = &sp->inputs[i];
        gen_input *d = &g->inputs[i];
        d->asset_id = dup_opt(in->asset_id, &oom);
        d->path = dup_opt(in->path, &oom);
        d->name = dup_opt(in->name ? in->name : "image", &oom);
        d->mime_type = dup_opt(in->mime_type ? in->mime_type : "application/octet-stream", &oom);
        if (in->data) {
            d->data = (unsigned char *)uni1__memdup(in->data, in->len ? in->len : 1);
            d->len = in->len;
            if (!d->data)
                oom = 1;
        }
    }
    return oom ? -1 : 0;
}

static int check_spec(const uni1_gen_spec *sp, char *err, size_t errlen)
{
    int n = (int)sp->n_inputs;
    if (sp->source >= n || sp->source < -1) {
        uni1__errf(err, errlen, "source: no input %d", sp->source);
        return -1;
    }
    for (size_t i = 0; i < sp->n_image_refs; i++)
        if (sp->image_refs[i] < 0 || sp->image_refs[i] >= n) {
            uni1__errf(err, errlen, "image_refs[%zu]: no input %d", i, sp->image_refs[i]);
            return -1;
        }
    for (size_t i = 0; i < sp->n_inputs; i++) {
        const uni1_gen_input *in = &sp->inputs[i];
        if (!!in->asset_id + !!in->data + !!in->path != 1) {
            uni1__errf(err, errlen, "input %zu: give exactly one of asset_id, data, path", i);
            return -1;
        }
    }
    if (!sp->job_id && !sp->prompt && sp->mode != UNI1_GEN_UPLOAD) {
        uni1__errf(err, errlen, "a prompt or a job id is needed");
        return -1;
    }
    return 0;
}

uni1_generation *uni1_generation_start(uni1_client *c, const uni1_gen_spec *spec,
                                       uni1_gen_event_fn on_event, void *userdata,
                                       uni1_status *status, char *err, size_t errlen)
{
    *status = UNI1_ERR_NOMEM;
    if (err && errlen)
        err[0] = 0;
    if (check_spec(spec, err, errlen) != 0) {
        *status = UNI1_ERR_INVALID;
        return NULL;
    }
    uni1_generation *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    if (pthread_mutex_init(&g->mu, NULL) != 0) {
        free(g);
        return NULL;
    }
    atomic_init(&g->refs, 2); /* the caller's and the task's */
    g->client = c;
    g->on_event = on_event;
    g->userdata = userdata;
    g->cost = -1;
    g->err.retry_after = -1;
    if (copy_spec(g, spec) != 0) {
        atomic_store(&g->refs, 1);
        release(g);
        return NULL;
    }
    uni1_task *t = uni1_task_start(c, run, g, spec->deadline, task_ended, g);
    if (!t) {
        atomic_store(&g->refs, 1);
        release(g);
        return NULL;
    }
    atomic_store(&g->task, t);
    *status = UNI1_OK;
    return g;
}

void uni1_generation_snapshot(uni1_generation *g, uni1_gen_snapshot *out)
{
    pthread_mutex_lock(&g->mu);
    *out = g->snap;
    pthread_mutex_unlock(&g->mu);
    if (!out->done && uni1_task_forked(task_of(g))) {
        out->done = 1;
        out->stage = UNI1_GEN_FAILED;
    }
}

uni1_task *uni1_generation_task(uni1_generation *g)
{
    return task_of(g);
}

int uni1_generation_cancel(uni1_generation *g)
{
    if (uni1_task_done(task_of(g)))
        return 0;
    /* Under mu with the end state (run): a cancel is either seen by it or
     * refused, never counted after the stage was settled. */
    pthread_mutex_lock(&g->mu);
    int ended = g->snap.done;
    if (!ended)
        atomic_store(&g->user_cancel, 1);
    pthread_mutex_unlock(&g->mu);
    if (ended)
        return 0;
    uni1_task_cancel(task_of(g));
    return 1;
}

uni1_status uni1_generation_status(const uni1_generation *g)
{
    if (uni1_task_forked(task_of(g)))
        return UNI1_ERR_CONFIG;
    return g->status;
}

const uni1_error *uni1_generation_error(const uni1_generation *g)
{
    static const uni1_error forked = {
        .status = UNI1_ERR_CONFIG,
        .message = "this generation was started by the parent process before fork(); "
                   "it cannot be followed from the child (submit it again here)",
        .retry_after = -1,
    };
    return uni1_task_forked(task_of(g)) ? &forked : &g->err;
}

const uni1_job *uni1_generation_job(const uni1_generation *g)
{
    return &g->job;
}

double uni1_generation_cost(const uni1_generation *g)
{
    return g->cost;
}

const char *uni1_generation_request_asset(const uni1_generation *g, int which)
{
    int i = which < 0 ? g->source : which < (int)g->n_refs ? g->refs_idx[which] : -1;
    return i >= 0 && (size_t)i < g->n_inputs ? g->inputs[i].asset_id : NULL;
}

const char *uni1_generation_input_asset(const uni1_generation *g, size_t i)
{
    uni1_task *t = uni1_generation_task((uni1_generation *)g);
    if (i >= g->n_inputs || !t || !uni1_task_done(t) || uni1_generation_status(g) != UNI1_OK)
        return NULL;
    return g->inputs[i].asset_id;
}

size_t uni1_generation_n_outputs(const uni1_generation *g)
{
    return g->status == UNI1_OK ? g->n_outputs : 0;
}

const uni1_gen_output *uni1_generation_output(const uni1_generation *g, size_t i)
{
    return i < uni1_generation_n_outputs(g) ? &g->outputs[i] : NULL;
}

void uni1_generation_free(uni1_generation *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    g->on_event = NULL;
    pthread_mutex_unlock(&g->mu);
    if (!uni1_task_done(task_of(g)))
        uni1_task_cancel(task_of(g));
    release(g);
}
