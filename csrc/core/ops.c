/* The operations of the public API: jobs, assets and small uploads, built
 * on the transport in http.c and the parsers in parse.c (generate and its
 * reconciliation live in generate.c). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "session.h"

static uni1_status parse_fail(uni1_session *s, uni1_status st, const char *what, const char *err)
{
    return uni1__fail_answer(s, st, what, "%s", err);
}

/* Ids go into URL paths: refuse anything but [A-Za-z0-9_-]. */
static int is_safe_id(const char *id)
{
    if (!id || !*id || strlen(id) >= UNI1_ID_MAX)
        return 0;
    for (const char *p = id; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

/* ---- jobs --------------------------------------------------------------- */

uni1_status uni1_get_job(uni1_session *s, const char *job_id, uni1_job *out)
{
    memset(out, 0, sizeof *out);
    uni1__reset_error(s);
    if (!is_safe_id(job_id))
        return uni1__fail(s, UNI1_ERR_INVALID, "not a valid job id");
    char path[UNI1_ID_MAX + 16];
    snprintf(path, sizeof path, "/jobs/%s", job_id);
    uni1_api_call call = {"GET", path, NULL, NULL, 0, 1, 0};
    char *resp = NULL;
    size_t len = 0;
    uni1_status st = uni1__api(s, &call, &resp, &len, NULL);
    if (st != UNI1_OK)
        return st;
    char err[256];
    st = uni1_parse_job(resp, len, out, err, sizeof err);
    free(resp);
    if (st != UNI1_OK)
        return parse_fail(s, st, "job", err);
    st = uni1__same_id(s, path, "job", job_id, out->id);
    if (st != UNI1_OK) {
        uni1_job_clear(out);
        return st;
    }
    /* A job this client re-attached to is its own: reconciling another
     * submission must never adopt it. */
    uni1__claim_job(s->client, out->id);
    return UNI1_OK;
}

static int append_param(char *q, size_t n, const char *name, const char *value)
{
    if (!value || !*value)
        return 0;
    char *esc = curl_easy_escape(NULL, value, 0);
    if (!esc)
        return -1;
    size_t used = strlen(q);
    int w = snprintf(q + used, n - used, "%s%s=%s", used ? "&" : "", name, esc);
    curl_free(esc);
    return (w < 0 || (size_t)w >= n - used) ? -1 : 0;
}

uni1_status uni1_list_jobs(uni1_session *s, const uni1_list_query *q, uni1_job_list *out)
{
    memset(out, 0, sizeof *out);
    uni1__reset_error(s);
    char query[2048] = "";
    char size[24] = "";
    if (q && q->page_size > 0)
        snprintf(size, sizeof size, "%d", q->page_size);
    if (q && (append_param(query, sizeof query, "pageSize", size) ||
              append_param(query, sizeof query, "paginationToken", q->pagination_token) ||
              append_param(query, sizeof query, "status", q->status) ||
              append_param(query, sizeof query, "type", q->type)))
        return uni1__fail(s, UNI1_ERR_INVALID, "list query too long");
    uni1_api_call call = {"GET", "/jobs", query, NULL, 0, 1, 0};
    char *resp = NULL;
    size_t len = 0;
    uni1_status st = uni1__api(s, &call, &resp, &len, NULL);
    if (st != UNI1_OK)
        return st;
    char err[256];
    st = uni1_parse_job_list(resp, len, out, err, sizeof err);
    free(resp);
    if (st != UNI1_OK)
        return parse_fail(s, st, "job list", err);
    return UNI1_OK;
}

uni1_status uni1_cancel_job(uni1_session *s, const char *job_id)
{
    uni1__reset_error(s);
    if (!is_safe_id(job_id))
        return uni1__fail(s, UNI1_ERR_INVALID, "not a valid job id");
    char path[UNI1_ID_MAX + 24];
    snprintf(path, sizeof path, "/jobs/%s/action", job_id);
    static const char body[] = "{\"action\":\"cancel\"}";
    uni1_api_call call = {"POST", path, NULL, body, sizeof body - 1, 0, 0};
    char *resp = NULL;
    uni1_status st = uni1__api(s, &call, &resp, NULL, NULL);
    free(resp);
    return st;
}

/* ---- waiting ------------------------------------------------------------ */

double uni1_next_poll_delay(const uni1_poll_state *st)
{
    /* The shortest pause grows with the job's age (2% of it): a progress
     * curve that slows near its end (most do) would otherwise draw polls
     * ever closer together. It also bounds how late success is noticed. */
    double shortest = st->elapsed * 0.02;
    if (shortest < 0.25)
        shortest = 0.25;
    /* The longest pause: 8 s, or a fifth of the job's age for a long job
     * (an estimate from a long run of progress is worth trusting further). */
    double longest = st->elapsed * 0.2;
    if (longest < 8.0)
        longest = 8.0;
    double rate = -1;
    if (st->progress > 0 && st->elapsed > 0)
        rate = st->progress / st->elapsed;
    if (st->prev_progress >= 0 && st->since_prev > 0 && st->progress > st->prev_progress) {
        double recent = (st->progress - st->prev_progress) / st->since_prev;
        /* Uneven progress: trust the faster of the two rates, which predicts
         * the earlier finish, so the last poll comes soon after it. */
        if (recent > rate)
            rate = recent;
    }
    double delay;
    if (st->predicted) {
        /* Finalizing says nothing of its progress: sleep until just before
         * the predicted end, then look every half second at most (a
         * finished job is noticed within a quarter second on average),
         * backing off gently once well past the prediction. */
        if (st->finalize_left + 0.05 >= 0.25)
            return st->finalize_left + 0.05 < longest ? st->finalize_left + 0.05 : longest;
        delay = st->elapsed * 0.01;
        if (delay > 0.8)
            delay = 0.8;
        if (-st->finalize_left > 2.0 && -st->finalize_left * 0.25 > delay)
            delay = -st->finalize_left * 0.25 < 1.5 ? -st->finalize_left * 0.25 : 1.5;
        return delay < 0.25 ? 0.25 : delay;
    }
    if (st->progress >= 0.999) {
        /* Finalizing: the end is near but its length unknown; back off gently
         * while it lasts, to at most 1.5 s. */
        const double finalizing_longest = 1.5;
        delay = 0.5;
        if (st->prev_progress >= 0.999 && st->since_prev * 1.5 > delay)
            delay = st->since_prev * 1.5;
        if (delay < shortest)
            delay = shortest;
        return delay < finalizing_longest ? delay : finalizing_longest;
    }
    if (rate > 0) {
        /* Most of the way to the estimated end: the faster rate above makes
         * the estimate early rather than late, and finalizing (predicted
         * separately) follows the progress anyway. */
        double eta = (1.0 - st->progress) / rate;
        delay = eta * 0.8;
        /* Never sleep longer than we have waited so far: an estimate made
         * early (queued time counts as slow progress) can be far too
         * pessimistic, and this bounds how late a short job is noticed to
         * about its own length. */
        double waited = st->elapsed > 0.5 ? st->elapsed : 0.5;
        if (delay > waited)
            delay = waited;
    } else {
        /* No progress yet (queued, warming up): back off from 0.5 s to 8 s,
         * whatever the time waited (a queue says nothing of the job's
         * length, and a short job shows progress by the second look). */
        delay = 0.5;
        for (unsigned i = 0; i < st->polls && delay < 8.0; i++)
            delay *= 3;
        if (delay > 8.0)
            delay = 8.0;
    }
    if (delay < shortest)
        delay = shortest;
    if (delay > longest)
        delay = longest;
    return delay;
}

/* What a client that has seen no job finish assumes finalizing lasts,
 * relative to the time before it. Short on purpose: ending the long sleep
 * early costs a few looks; ending it late costs delay on every job. */
#define UNI1_FINALIZE_PRIOR 0.15

double uni1_finalize_left(double created_ts, double finalizing_ts, double ratio, double now)
{
    if (ratio < 0)
        ratio = UNI1_FINALIZE_PRIOR;
    return finalizing_ts + ratio * (finalizing_ts - created_ts) - now;
}

static double wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A finished job's statusHistory: finalizing took (success - finalizing)
 * after (finalizing - created). Jobs too short to measure teach nothing. */
static void learn_finalize(uni1_client *c, const uni1_job *job)
{
    double before = job->finalizing_ts - job->created_ts;
    double during = job->success_ts - job->finalizing_ts;
    if (job->created_ts <= 0 || job->finalizing_ts <= 0 || job->success_ts <= 0 || before < 1.0 ||
        during < 0 || during > 10 * before)
        return;
    double r = during / before;
    pthread_mutex_lock(&c->lock);
    /* A running mean of the first few, then a slow moving average. */
    c->finalize_samples++;
    double w = c->finalize_samples < 8 ? 1.0 / c->finalize_samples : 0.125;
    c->finalize_ratio =
        c->finalize_samples == 1 ? r : c->finalize_ratio + w * (r - c->finalize_ratio);
    pthread_mutex_unlock(&c->lock);
}

/* For a job in "finalizing" whose creation we saw (created within a few
 * seconds of the wait's start by the server's clock: a fresh job, and clocks
 * near enough to tell), the predicted end from what the client learned,
 * mapped onto our clock; nothing otherwise. */
static void finalize_prediction(uni1_client *c, const uni1_job *job, double wall_start,
                                uni1_poll_state *ps)
{
    if (strcmp(job->status, "finalizing") != 0 || job->created_ts <= 0 || job->finalizing_ts <= 0 ||
        fabs(job->created_ts - wall_start) > 5.0)
        return;
    pthread_mutex_lock(&c->lock);
    double r = c->finalize_samples ? c->finalize_ratio : -1;
    pthread_mutex_unlock(&c->lock);
    /* Server time to ours: the job was created as the wait began. */
    double offset = job->created_ts - wall_start;
    ps->predicted = 1;
    ps->finalize_left =
        uni1_finalize_left(job->created_ts, job->finalizing_ts, r, wall_clock() + offset);
}

uni1_status uni1_wait_job(uni1_session *s, uni1_job *job, uni1_progress_fn progress, void *userdata)
{
    uni1__reset_error(s);
    if (!is_safe_id(job->id))
        return uni1__fail(s, UNI1_ERR_INVALID, "not a valid job id");
    double start = uni1_monotonic();
    double prev_progress = -1, prev_time = start;
    unsigned polls = 0;
    /* The server's clock of a job created just now and ours: their offset
     * (created_ts - wall clock at the first poll) maps its statusHistory
     * onto our clock; an older job (an attach) gets no prediction. */
    double wall_start = wall_clock();
    /* A job we know nothing about is polled at once; a fresh one first waits. */
    int poll_now = job->status[0] == 0 || uni1_job_state_is_terminal(job->state);
    for (;;) {
        if (!poll_now) {
            double now = uni1_monotonic();
            uni1_poll_state ps = {
                now - start, job->progress, prev_progress, now - prev_time, polls, 0, 0};
            finalize_prediction(s->client, job, wall_start, &ps);
            double delay = uni1_next_poll_delay(&ps);
            if (s->deadline > 0 && now >= s->deadline)
                return uni1__fail(s, UNI1_ERR_TIMEOUT, "job %s is still %s at the deadline",
                                  job->id, job->status);
            if (s->task && delay >= UNI1_IDLE_PAUSE) {
                /* A job waited on in the engine holds, between its polls, no
                 * easy handle (nothing here keeps one across the pause) and
                 * no stack pages it does not use: 10,000 waits stay small. */
                uni1__session_idle(s);
                uni1__engine_trim_stack();
            }
            uni1_status sl = uni1__sleep(s, delay);
            if (sl == UNI1_ERR_TIMEOUT)
                return uni1__fail(s, UNI1_ERR_TIMEOUT, "job %s is still %s at the deadline",
                                  job->id, job->status);
            if (sl != UNI1_OK)
                return sl;
            prev_progress = job->progress;
            prev_time = now;
        }
        poll_now = 0;
        uni1_job fresh;
        uni1_status st = uni1_get_job(s, job->id, &fresh);
        if (st != UNI1_OK)
            return st;
        uni1_job_clear(job);
        *job = fresh;
        polls++;
        if (progress && progress(userdata, job))
            return uni1__fail(s, UNI1_ERR_INTERRUPTED, "stopped by the progress callback");
        switch (job->state) {
        case UNI1_JOB_SUCCESS:
            learn_finalize(s->client, job);
            return UNI1_OK;
        case UNI1_JOB_FAILURE:
            return uni1__fail(s, UNI1_ERR_JOB_FAILED, "job %s failed: %s", job->id,
                              job->error ? job->error : "no reason given");
        case UNI1_JOB_CANCELED:
            return uni1__fail(s, UNI1_ERR_JOB_CANCELED, "job %s was canceled", job->id);
        default:
            break;
        }
    }
}

/* ---- assets and uploads ------------------------------------------------- */

uni1_status uni1_get_asset(uni1_session *s, const char *asset_id, uni1_asset *out)
{
    memset(out, 0, sizeof *out);
    uni1__reset_error(s);
    if (!is_safe_id(asset_id))
        return uni1__fail(s, UNI1_ERR_INVALID, "not a valid asset id");
    char path[UNI1_ID_MAX + 16];
    snprintf(path, sizeof path, "/assets/%s", asset_id);
    uni1_api_call call = {"GET", path, NULL, NULL, 0, 1, 0};
    char *resp = NULL;
    size_t len = 0;
    uni1_status st = uni1__api(s, &call, &resp, &len, NULL);
    if (st != UNI1_OK)
        return st;
    char err[256];
    st = uni1_parse_asset(resp, len, out, err, sizeof err);
    free(resp);
    if (st != UNI1_OK)
        return parse_fail(s, st, "asset", err);
    st = uni1__same_id(s, path, "asset", asset_id, out->id);
    if (st != UNI1_OK)
        uni1_asset_clear(out);
    return st;
}

uni1_status uni1_upload_image(uni1_session *s, const void *data, size_t len, const char *name,
                              const char *mime_type, uni1_asset *out)
{
    memset(out, 0, sizeof *out);
    uni1__reset_error(s);
    if (!data || len == 0)
        return uni1__fail(s, UNI1_ERR_INVALID, "upload: no data");
    if (len > (size_t)INT_MAX / 2)
        return uni1__fail(s, UNI1_ERR_INVALID, "upload: too large for a single request");
    if (!mime_type || strncmp(mime_type, "image/", 6) != 0 || strpbrk(mime_type, ";,\"\\ "))
        return uni1__fail(s, UNI1_ERR_INVALID, "upload: mime type must be image/...");
    size_t prefix_len = strlen("data:;base64,") + strlen(mime_type);
    size_t enc_len = 4 * ((len + 2) / 3);
    char *data_url = malloc(prefix_len + enc_len + 1);
    if (!data_url)
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    snprintf(data_url, prefix_len + 1, "data:%s;base64,", mime_type);
    EVP_EncodeBlock((unsigned char *)data_url + prefix_len, data, (int)len);
    cJSON *obj = cJSON_CreateObject();
    char *body = NULL;
    if (obj && cJSON_AddStringToObject(obj, "image", data_url) &&
        cJSON_AddStringToObject(obj, "name", name && *name ? name : "image"))
        body = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    free(data_url);
    if (!body)
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    /* A second copy of an uploaded image costs nothing, so uploads retry. */
    uni1_api_call call = {"POST", "/assets", NULL, body, strlen(body), 1, 0};
    char *resp = NULL;
    size_t rlen = 0;
    uni1_status st = uni1__api(s, &call, &resp, &rlen, NULL);
    free(body);
    if (st != UNI1_OK)
        return st;
    char err[256];
    st = uni1_parse_asset(resp, rlen, out, err, sizeof err);
    free(resp);
    if (st != UNI1_OK)
        return parse_fail(s, st, "upload", err);
    return UNI1_OK;
}
