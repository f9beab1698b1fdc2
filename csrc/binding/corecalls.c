/* The core functions a blocking call of the binding makes, each run on the
 * client's engine through py_call_run (call.c). Every output is cleared
 * first: a call stopped before its task ran leaves it empty, not
 * uninitialised. */
#include <string.h>

#include "binding.h"

typedef struct op {
    const uni1_generate_params *params;
    const char *const *exclude;
    size_t n_exclude;
    const char *id, *dir;
    double sent_at;
    const uni1_list_query *query;
    uni1_job *job;
    uni1_job_list *list;
    uni1_asset *asset;
    uni1_buffer *buffer;
    char *content_type;
    size_t ct_len;
    double *cost;
    int *found;
    const uni1_asset *assets;
    size_t n;
    const char *const *names;
    int overwrite;
    char *const *paths;
    size_t path_len;
    void *progress_userdata;
} op;

static uni1_status do_generate(uni1_session *s, void *arg)
{
    op *o = arg;
    return uni1_generate_excluding(s, o->params, o->exclude, o->n_exclude, o->job, o->cost);
}

uni1_status py_run_generate(py_call *c, const uni1_generate_params *p, const char *const *exclude,
                            size_t n_exclude, uni1_job *job, double *cost)
{
    memset(job, 0, sizeof *job);
    *cost = -1;
    op o = {.params = p, .exclude = exclude, .n_exclude = n_exclude, .job = job, .cost = cost};
    return py_call_run(c, do_generate, &o);
}

static uni1_status do_find(uni1_session *s, void *arg)
{
    op *o = arg;
    return uni1_find_submitted_job(s, o->params, o->sent_at, o->exclude, o->n_exclude, o->job,
                                   o->found);
}

uni1_status py_run_find_job(py_call *c, const uni1_generate_params *p, double sent_at,
                            const char *const *exclude, size_t n_exclude, uni1_job *job, int *found)
{
    memset(job, 0, sizeof *job);
    *found = 0;
    op o = {.params = p,
            .sent_at = sent_at,
            .exclude = exclude,
            .n_exclude = n_exclude,
            .job = job,
            .found = found};
    return py_call_run(c, do_find, &o);
}

static uni1_status do_get_job(uni1_session *s, void *arg)
{
    op *o = arg;
    return uni1_get_job(s, o->id, o->job);
}

uni1_status py_run_get_job(py_call *c, const char *id, uni1_job *job)
{
    memset(job, 0, sizeof *job);
    op o = {.id = id, .job = job};
    return py_call_run(c, do_get_job, &o);
}

static uni1_status do_list_jobs(uni1_session *s, void *arg)
{
    op *o = arg;
    return uni1_list_jobs(s, o->query, o->list);
}

uni1_status py_run_list_jobs(py_call *c, const uni1_list_query *q, uni1_job_list *list)
{
    memset(list, 0, sizeof *list);
    op o = {.query = q, .list = list};
    return py_call_run(c, do_list_jobs, &o);
}

static uni1_status do_cancel_job(uni1_session *s, void *arg)
{
    op *o = arg;
    return uni1_cancel_job(s, o->id);
}

uni1_status py_run_cancel_job(py_call *c, const char *id)
{
    op o = {.id = id};
    return py_call_run(c, do_cancel_job, &o);
}

static uni1_status do_wait_job(uni1_session *s, void *arg)
{
    op *o = arg;
    return uni1_wait_job(s, o->job, py_wait_progress, o->progress_userdata);
}

uni1_status py_run_wait_job(py_call *c, uni1_job *job)
{
    op o = {.job = job, .progress_userdata = c};
    return py_call_run(c, do_wait_job, &o);
}

static uni1_status do_get_asset(uni1_session *s, void *arg)
{
    op *o = arg;
    return uni1_get_asset(s, o->id, o->asset);
}

uni1_status py_run_get_asset(py_call *c, const char *id, uni1_asset *asset)
{
    memset(asset, 0, sizeof *asset);
    op o = {.id = id, .asset = asset};
    return py_call_run(c, do_get_asset, &o);
}

static uni1_status do_fetch_to_memory(uni1_session *s, void *arg)
{
    op *o = arg;
    return uni1_download_asset_to_buffer(s, o->asset, o->buffer, o->content_type, o->ct_len);
}

uni1_status py_run_fetch_to_memory(py_call *c, uni1_asset *asset, uni1_buffer *out,
                                   char *content_type, size_t ct_len)
{
    memset(out, 0, sizeof *out);
    if (ct_len)
        content_type[0] = 0;
    op o = {.asset = asset, .buffer = out, .content_type = content_type, .ct_len = ct_len};
    return py_call_run(c, do_fetch_to_memory, &o);
}

static uni1_status do_fetch_to_dir(uni1_session *s, void *arg)
{
    op *o = arg;
    return uni1_download_assets_to_dir(s, o->assets, o->n, o->dir, o->names, o->overwrite, o->paths,
                                       o->path_len);
}

uni1_status py_run_fetch_to_dir(py_call *c, const uni1_asset *assets, size_t n, const char *dir,
                                const char *const *names, int overwrite, char *const *paths,
                                size_t path_len)
{
    op o = {.assets = assets,
            .n = n,
            .dir = dir,
            .names = names,
            .overwrite = overwrite,
            .paths = paths,
            .path_len = path_len};
    return py_call_run(c, do_fetch_to_dir, &o);
}
