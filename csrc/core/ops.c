/* The operations of the public API: generate, jobs, assets and small
 * uploads, built on the transport in http.c and the parsers in parse.c. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "session.h"

#define GENERATE_PATH "/generate/custom/" UNI1_MODEL_ID

static uni1_status parse_fail(uni1_session *s, uni1_status st, const char *what, const char *err)
{
    return uni1__fail(s, st, "malformed response from server (%s): %s", what, err);
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

/* ---- generate ----------------------------------------------------------- */

static double wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "2026-11-23T22:05:20.123Z" to Unix seconds; -1 if it does not parse. */
static double parse_iso8601(const char *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    double frac = 0;
    int n = 0;
    if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6)
        return -1;
    if (t[n] == '.') {
        char *end;
        frac = strtod(t + n, &end);
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t secs = timegm(&tm);
    return secs == (time_t)-1 ? -1 : (double)secs + frac;
}

/* Whether every field of the request body `want` stands, equal, in the job's
 * metadata.input (the server may add defaults of its own). */
static int input_matches(const cJSON *want, const char *raw_job, size_t raw_len)
{
    cJSON *job = cJSON_ParseWithLength(raw_job, raw_len);
    if (!job)
        return 0;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(job, "metadata");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(meta, "input");
    int ok = cJSON_IsObject(input);
    for (const cJSON *f = want->child; ok && f; f = f->next)
        ok = cJSON_Compare(f, cJSON_GetObjectItemCaseSensitive(input, f->string), 1);
    cJSON_Delete(job);
    return ok;
}

#define RECONCILE_SKEW 120.0
#define RECONCILE_PAGES 5

/* 1: found and adopted into *out; 0: certainly not there; -1: could not
 * tell (the listing failed; the session error says why). */
static int reconcile(uni1_session *s, const char *body, double sent_at, const char *const *exclude,
                     size_t n_exclude, uni1_job *out)
{
    cJSON *want = cJSON_Parse(body);
    if (!want)
        return -1;
    int result = 0, reached_end = 0;
    char token[512] = "";
    for (int page = 0; page < RECONCILE_PAGES && result == 0; page++) {
        uni1_list_query q = {50, token[0] ? token : NULL, NULL, NULL};
        uni1_job_list l;
        if (uni1_list_jobs(s, &q, &l) != UNI1_OK) {
            result = -1;
            break;
        }
        int older_seen = 0;
        for (size_t i = 0; i < l.n_jobs && result == 0; i++) {
            uni1_job *j = &l.jobs[i];
            double created = j->created_at[0] ? parse_iso8601(j->created_at) : -1;
            if (created >= 0 && created < sent_at - RECONCILE_SKEW) {
                older_seen = 1; /* newest first: the rest are older still */
                continue;
            }
            int excluded = uni1__is_known_job(s->client, j->id);
            for (size_t k = 0; k < n_exclude && !excluded; k++)
                excluded = exclude[k] && strcmp(exclude[k], j->id) == 0;
            if (excluded || !input_matches(want, j->raw_json, j->raw_len))
                continue;
            if (!uni1__claim_job(s->client, j->id))
                continue; /* another thread adopted it a moment ago */
            if (uni1_job_copy(out, j) != UNI1_OK) {
                uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
                result = -1;
            } else {
                result = 1;
            }
        }
        int more = l.next_token && !older_seen;
        if (more && strlen(l.next_token) >= sizeof token) {
            uni1__fail(s, UNI1_ERR_PROTOCOL, "job list: pagination token too long to follow");
            result = -1;
            more = 0;
        }
        if (more)
            snprintf(token, sizeof token, "%s", l.next_token);
        uni1_job_list_clear(&l);
        if (!more) {
            reached_end = 1;
            break;
        }
    }
    /* Pages left unread that may still hold jobs newer than the request:
     * the list cannot prove the job does not exist. */
    if (result == 0 && !reached_end) {
        uni1__fail(s, UNI1_ERR_UNCERTAIN, "job list: %d pages of jobs newer than the request",
                   RECONCILE_PAGES);
        result = -1;
    }
    cJSON_Delete(want);
    return result;
}

/* POSTs the generate body. On UNI1_OK either *resp holds the answer, or, when
 * an uncertain attempt was reconciled, *adopted is 1 and `job` holds the job. */
static uni1_status post_generate(uni1_session *s, const uni1_generate_params *p, int dry_run,
                                 char **resp, size_t *resp_len, long *status, uni1_job *job,
                                 int *adopted)
{
    char err[256];
    char *body = NULL;
    *adopted = 0;
    uni1__reset_error(s);
    uni1_status st = uni1_build_generate_body(p, &body, err, sizeof err);
    if (st != UNI1_OK)
        return uni1__fail(s, st, "%s", err);
    uni1_api_call call = {"POST",  GENERATE_PATH, dry_run ? "dryRun=true" : NULL,
                          body,    strlen(body),  dry_run,
                          !dry_run};
    uint64_t hash = 1469598103934665603ull; /* FNV-1a of the body */
    for (const char *b = body; *b; b++)
        hash = (hash ^ (unsigned char)*b) * 1099511628211ull;
    for (int attempt = 0;; attempt++) {
        double sent_at = wall_clock();
        if (!dry_run)
            uni1__inflight_begin(s->client, hash);
        st = uni1__api(s, &call, resp, resp_len, status);
        if (!dry_run)
            uni1__inflight_end(s->client, hash);
        if (st == UNI1_OK || dry_run)
            break;
        long http = s->err.http_status;
        int not_created =
            st == UNI1_ERR_CONNECT ||
            ((st == UNI1_ERR_TIMEOUT || st == UNI1_ERR_NETWORK) && !s->last_request_sent) ||
            (st == UNI1_ERR_HTTP && (http == 408 || http == 429));
        int uncertain =
            ((st == UNI1_ERR_TIMEOUT || st == UNI1_ERR_NETWORK) && s->last_request_sent) ||
            (st == UNI1_ERR_HTTP && http >= 500);
        if (!not_created && !uncertain)
            break; /* 400, 401, 403, 404, interrupted, ...: report as is */
        if (uncertain) {
            /* Keep the error that made it uncertain while we look. */
            uni1_error saved = s->err;
            s->err.body = NULL;
            uni1__log(s, UNI1_LOG_INFO, "POST %s: %s; looking for the job it may have created",
                      GENERATE_PATH, saved.message);
            /* An identical request of this client still waiting for its
             * answer may own a job that matches ours: let it claim it first. */
            int found = 0;
            double wait_until = uni1_monotonic() + s->client->request_timeout;
            while (uni1__inflight_sending(s->client, hash) > 0 && found == 0) {
                if (uni1_monotonic() >= wait_until ||
                    uni1__sleep(s, UNI1_WAKE_INTERVAL_MS / 1000.0) != UNI1_OK)
                    found = -1;
            }
            if (found == 0)
                found = reconcile(s, body, sent_at, NULL, 0, job);
            /* After a timeout the server may still be working on the request,
             * so an empty list proves nothing yet: look again a few times,
             * and never send again on a timeout. (After a 5xx or a dropped
             * connection the server is done with it and the list is final.) */
            int still_running = st == UNI1_ERR_TIMEOUT;
            for (double pause = 1.0; found == 0 && still_running && pause <= 4.0; pause *= 2) {
                uni1_status sl = uni1__sleep(s, pause);
                if (sl != UNI1_OK)
                    break; /* deadline or interrupt: report as uncertain */
                found = reconcile(s, body, sent_at, NULL, 0, job);
            }
            if (found == 0 && still_running)
                found = -1;
            if (found == 1) {
                free(saved.body);
                uni1__reset_error(s);
                *adopted = 1;
                uni1__log(s, UNI1_LOG_INFO, "adopted %s, created by the uncertain request",
                          job->id);
                st = UNI1_OK;
                break;
            }
            if (found < 0) {
                char why[256];
                if (s->err.status != UNI1_OK)
                    snprintf(why, sizeof why, "the job list could not be read: %.200s",
                             s->err.message);
                else
                    snprintf(why, sizeof why, "no such job has appeared in the job list yet");
                uni1__reset_error(s);
                free(saved.body);
                s->err.sent_at = sent_at;
                st = uni1__fail(s, UNI1_ERR_UNCERTAIN,
                                "the generate request may have created a job (%.200s), and %s; "
                                "look for it (GET /v1/jobs) before submitting again",
                                saved.message, why);
                break;
            }
            /* Certainly not created: the original error stands. */
            uni1__reset_error(s);
            s->err = saved;
        }
        if (attempt >= s->client->max_retries)
            break;
        double wait = uni1__backoff(s, attempt);
        if (st == UNI1_ERR_HTTP && http == 429 && s->err.retry_after > wait)
            wait = s->err.retry_after < UNI1_RETRY_AFTER_CAP ? s->err.retry_after
                                                             : UNI1_RETRY_AFTER_CAP;
        if (s->deadline > 0 && uni1_monotonic() + wait >= s->deadline)
            break;
        uni1__log(s, UNI1_LOG_INFO, "POST %s: %s; no job was created, sending again in %.2f s",
                  GENERATE_PATH, s->err.message, wait);
        uni1_status sl = uni1__retry_pause(s, wait);
        if (sl != UNI1_OK) {
            st = sl;
            break;
        }
    }
    free(body);
    return st;
}

uni1_status uni1_find_submitted_job(uni1_session *s, const uni1_generate_params *p, double sent_at,
                                    const char *const *exclude, size_t n_exclude, uni1_job *out,
                                    int *found)
{
    char err[256];
    char *body = NULL;
    memset(out, 0, sizeof *out);
    *found = 0;
    uni1__reset_error(s);
    uni1_status st = uni1_build_generate_body(p, &body, err, sizeof err);
    if (st != UNI1_OK)
        return uni1__fail(s, st, "%s", err);
    int r = reconcile(s, body, sent_at, exclude, n_exclude, out);
    free(body);
    if (r < 0)
        return s->err.status != UNI1_OK ? s->err.status : UNI1_ERR_PROTOCOL;
    if (r == 1)
        *found = 1; /* reconcile claimed it for this client */
    return UNI1_OK;
}

uni1_status uni1_generate(uni1_session *s, const uni1_generate_params *p, uni1_job *out,
                          double *cost)
{
    char *resp = NULL;
    size_t len = 0;
    long status = 0;
    memset(out, 0, sizeof *out);
    if (cost)
        *cost = -1;
    int adopted = 0;
    uni1_status st = post_generate(s, p, 0, &resp, &len, &status, out, &adopted);
    if (st != UNI1_OK)
        return st;
    if (adopted)
        return UNI1_OK; /* reconcile claimed it for this client */
    char err[256];
    double c = -1;
    st = uni1_parse_submit(resp, len, out, &c, err, sizeof err);
    free(resp);
    if (st != UNI1_OK)
        return parse_fail(s, st, "generate", err);
    if (cost)
        *cost = c;
    uni1__claim_job(s->client, out->id);
    uni1__log(s, UNI1_LOG_INFO, "submitted %s (%s)", out->id, out->status);
    return UNI1_OK;
}

uni1_status uni1_estimate(uni1_session *s, const uni1_generate_params *p, double *cost)
{
    char *resp = NULL;
    size_t len = 0;
    long status = 0;
    *cost = -1;
    uni1_job unused;
    int adopted = 0;
    memset(&unused, 0, sizeof unused);
    uni1_status st = post_generate(s, p, 1, &resp, &len, &status, &unused, &adopted);
    if (st != UNI1_OK)
        return st;
    char err[256];
    if (status != 269 && status != 200) {
        free(resp);
        return uni1__fail(s, UNI1_ERR_PROTOCOL, "dry run answered HTTP %ld, expected 269", status);
    }
    st = uni1_parse_estimate(resp, len, cost, err, sizeof err);
    free(resp);
    if (st != UNI1_OK)
        return parse_fail(s, st, "dry run", err);
    return UNI1_OK;
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
    const double longest = 8.0;
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
        double eta = (1.0 - st->progress) / rate;
        delay = eta * 0.5;
    } else {
        /* No progress yet (queued, warming up): back off from 0.5 s to 5 s. */
        delay = 0.5;
        for (unsigned i = 0; i < st->polls && delay < 5.0; i++)
            delay *= 1.5;
        if (delay > 5.0)
            delay = 5.0;
    }
    /* Never sleep longer than we have waited so far: an estimate made early
     * (queued time counts as slow progress) can be far too pessimistic, and
     * this bounds how late a short job is noticed to about its own length. */
    double waited = st->elapsed > 0.5 ? st->elapsed : 0.5;
    if (delay > waited)
        delay = waited;
    if (delay < shortest)
        delay = shortest;
    if (delay > longest)
        delay = longest;
    return delay;
}

uni1_status uni1_wait_job(uni1_session *s, uni1_job *job, uni1_progress_fn progress, void *userdata)
{
    uni1__reset_error(s);
    if (!is_safe_id(job->id))
        return uni1__fail(s, UNI1_ERR_INVALID, "not a valid job id");
    double start = uni1_monotonic();
    double prev_progress = -1, prev_time = start;
    unsigned polls = 0;
    /* A job we know nothing about is polled at once; a fresh one first waits. */
    int poll_now = job->status[0] == 0 || uni1_job_state_is_terminal(job->state);
    for (;;) {
        if (!poll_now) {
            double now = uni1_monotonic();
            uni1_poll_state ps = {now - start, job->progress, prev_progress, now - prev_time,
                                  polls};
            double delay = uni1_next_poll_delay(&ps);
            if (s->deadline > 0 && now >= s->deadline)
                return uni1__fail(s, UNI1_ERR_TIMEOUT, "job %s is still %s at the deadline",
                                  job->id, job->status);
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
