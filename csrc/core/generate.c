/* Generate, exactly once: the POST, and after an uncertain outcome the look
 * for the job it may have created, over the settle window, with claims and
 * in-flight twins shared by every client of the process (ledger.c). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ledger.h"
#include "retry.h"
#include "session.h"
#include "uni1_internal.h"

#define GENERATE_PATH "/generate/custom/" UNI1_MODEL_ID

/* How far back (seconds) a job may be dated and still be the answer to a
 * request: the server's clock and ours may disagree. */
#define RECONCILE_SKEW 120.0
#define RECONCILE_PAGES 5
/* The pauses between looks of the settle window: from the first to the
 * longest, growing by half each time. */
#define SETTLE_FIRST_PAUSE 0.25
#define SETTLE_LONGEST_PAUSE 2.0

/* What one look found. */
enum look_result {
    LOOK_FOUND = 1,    /* adopted into *out, claimed */
    LOOK_NONE = 0,     /* the list certainly holds no such job (yet) */
    LOOK_FAILED = -1,  /* the list could not be read (session error says why) */
    LOOK_STOPPED = -2, /* deadline or interrupt (session error says which) */
    LOOK_TWIN = -3     /* an identical request never got its answer */
};

static double wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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

/* The ledger's key for the client's server. */
static uint64_t server_key(const uni1_client *c)
{
    return uni1__ledger_hash(UNI1_LEDGER_SEED, c->base_url);
}

int uni1__claim_job(uni1_client *c, const char *id)
{
    return uni1__ledger_claim(server_key(c), id);
}

int uni1__is_known_job(uni1_client *c, const char *id)
{
    return uni1__ledger_is_claimed(server_key(c), id);
}

/* What a reconciliation looks for, and must not take. */
typedef struct wanted {
    cJSON *body;     /* the request body */
    uint64_t server; /* ledger keys */
    uint64_t request;
    double sent_at;
    const char *const *exclude;
    size_t n_exclude;
} wanted;

static int wanted_init(wanted *w, const uni1_client *c, const char *body, double sent_at,
                       const char *const *exclude, size_t n_exclude)
{
    w->body = cJSON_Parse(body);
    w->server = server_key(c);
    /* Twins: same server, same project, same body. */
    uint64_t h = uni1__ledger_hash(w->server, "\n");
    h = uni1__ledger_hash(h, c->project_id_raw ? c->project_id_raw : "");
    h = uni1__ledger_hash(h, "\n");
    w->request = uni1__ledger_hash(h, body);
    w->sent_at = sent_at;
    w->exclude = exclude;
    w->n_exclude = n_exclude;
    return w->body ? 0 : -1;
}

typedef struct candidates {
    uni1_job *jobs;
    size_t n, cap;
} candidates;

static void candidates_clear(candidates *cs)
{
    for (size_t i = 0; i < cs->n; i++)
        uni1_job_clear(&cs->jobs[i]);
    free(cs->jobs);
    memset(cs, 0, sizeof *cs);
}

static int candidates_add(candidates *cs, const uni1_job *j)
{
    if (cs->n == cs->cap) {
        size_t cap = cs->cap ? 2 * cs->cap : 4;
        uni1_job *p = realloc(cs->jobs, cap * sizeof *p);
        if (!p)
            return -1;
        cs->jobs = p;
        cs->cap = cap;
    }
    if (uni1_job_copy(&cs->jobs[cs->n], j) != UNI1_OK)
        return -1;
    cs->n++;
    return 0;
}

static int is_excluded(const wanted *w, const char *id)
{
    if (uni1__ledger_is_claimed(w->server, id))
        return 1;
    for (size_t k = 0; k < w->n_exclude; k++)
        if (w->exclude[k] && strcmp(w->exclude[k], id) == 0)
            return 1;
    return 0;
}

/* Reads the recent job list (newest first, up to RECONCILE_PAGES pages) into
 * *out: every job that matches and nobody holds. LOOK_NONE or LOOK_FAILED. */
static int list_candidates(uni1_session *s, const wanted *w, candidates *out)
{
    int result = LOOK_NONE, reached_end = 0;
    char token[512] = "";
    for (int page = 0; page < RECONCILE_PAGES && result == LOOK_NONE; page++) {
        uni1_list_query q = {50, token[0] ? token : NULL, NULL, NULL};
        uni1_job_list l;
        if (uni1_list_jobs(s, &q, &l) != UNI1_OK)
            return LOOK_FAILED;
        int older_seen = 0;
        for (size_t i = 0; i < l.n_jobs && result == LOOK_NONE; i++) {
            uni1_job *j = &l.jobs[i];
            double created = j->created_at[0] ? uni1__parse_iso8601(j->created_at) : -1;
            if (created >= 0 && created < w->sent_at - RECONCILE_SKEW) {
                older_seen = 1; /* newest first: the rest are older still */
                continue;
            }
            if (is_excluded(w, j->id) || !input_matches(w->body, j->raw_json, j->raw_len))
                continue;
            if (candidates_add(out, j) != 0) {
                uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
                result = LOOK_FAILED;
            }
        }
        int more = l.next_token && !older_seen;
        if (more && strlen(l.next_token) >= sizeof token) {
            uni1__fail(s, UNI1_ERR_PROTOCOL, "job list: pagination token too long to follow");
            result = LOOK_FAILED;
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
     * the list cannot prove the job does not exist (a match found is kept:
     * on a busy account the job we look for is often on the first page). */
    if (result == LOOK_NONE && !reached_end && out->n == 0) {
        uni1__fail(s, UNI1_ERR_UNCERTAIN, "job list: %d pages of jobs newer than the request",
                   RECONCILE_PAGES);
        result = LOOK_FAILED;
    }
    return result;
}

/* One look at the job list, taken while no identical request of the process
 * waits for its answer (its job would match, unclaimed yet); a look during
 * which one went out is taken again. The first candidate still free is
 * claimed and copied into *out. */
static int look(uni1_session *s, const wanted *w, uni1_job *out)
{
    double twins_until = uni1_monotonic() + s->client->request_timeout;
    for (;;) {
        uint64_t ticket;
        while (!uni1__ledger_watch_begin(w->request, &ticket)) {
            if (uni1_monotonic() >= twins_until)
                return LOOK_TWIN;
            if (uni1__sleep(s, UNI1_WAKE_INTERVAL_MS / 1000.0) != UNI1_OK)
                return LOOK_STOPPED;
        }
        candidates cs = {0};
        int r = list_candidates(s, w, &cs);
        int quiet = uni1__ledger_watch_end(w->request, ticket);
        if (r == LOOK_NONE && !quiet && cs.n > 0) {
            candidates_clear(&cs);
            if (uni1_monotonic() >= twins_until)
                return LOOK_TWIN;
            continue;
        }
        for (size_t i = 0; r == LOOK_NONE && i < cs.n; i++) {
            int claimed = uni1__ledger_claim(w->server, cs.jobs[i].id);
            if (claimed < 0) {
                uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
                r = LOOK_FAILED;
            } else if (claimed) {
                *out = cs.jobs[i];
                memset(&cs.jobs[i], 0, sizeof cs.jobs[i]);
                r = LOOK_FOUND;
            }
            /* else: another caller claimed it since the listing */
        }
        candidates_clear(&cs);
        return r;
    }
}

/* Whether the deadline or the interrupt callback stopped the look. */
static int look_was_stopped(const uni1_session *s)
{
    return s->err.status == UNI1_ERR_INTERRUPTED ||
           (s->deadline > 0 && uni1_monotonic() >= s->deadline);
}

/* The settle window after an uncertain attempt: looks until one that started
 * after `until` (uni1_monotonic) has been taken. LOOK_FOUND, LOOK_NONE (the
 * whole window showed nothing), or why it could not tell. A list that cannot
 * be read ends the window at once: its reads were retried already, and the
 * caller is better told now (with what to look for) than in a while. */
static int settle(uni1_session *s, const wanted *w, double until, uni1_job *out)
{
    double pause = SETTLE_FIRST_PAUSE;
    for (;;) {
        double started = uni1_monotonic();
        uni1__reset_error(s);
        int r = look(s, w, out);
        if (r == LOOK_FOUND || r == LOOK_STOPPED || r == LOOK_TWIN)
            return r;
        if (r == LOOK_FAILED && look_was_stopped(s))
            return LOOK_STOPPED;
        /* A list too long to prove absence is no reason to stop looking: the
         * job may still appear on its first page. One that cannot be read
         * ends the window. */
        if (r == LOOK_FAILED && s->err.status != UNI1_ERR_UNCERTAIN)
            return r;
        if (started >= until)
            return r; /* the last look, and nothing */
        double left = until - uni1_monotonic();
        double wait = pause < left ? pause : left;
        if (wait > 0 && uni1__sleep(s, wait) != UNI1_OK)
            return LOOK_STOPPED;
        pause = pause * 1.5 < SETTLE_LONGEST_PAUSE ? pause * 1.5 : SETTLE_LONGEST_PAUSE;
    }
}

/* Sets UNI1_ERR_UNCERTAIN for an attempt sent at sent_at that failed with
 * `cause`, after a look that ended in r. */
static uni1_status uncertain(uni1_session *s, const char *cause, int r, double sent_at)
{
    char why[300];
    if (r == LOOK_STOPPED)
        snprintf(why, sizeof why, "the look for it was cut short (%.200s)", s->err.message);
    else if (r == LOOK_TWIN)
        snprintf(why, sizeof why,
                 "an identical request of this process is still waiting for its answer, so a "
                 "matching job cannot be told apart from its job");
    else if (r == LOOK_FAILED)
        snprintf(why, sizeof why, "the job list could not be read: %.200s", s->err.message);
    else
        snprintf(why, sizeof why,
                 "no such job appeared in the job list within the settle window (%g s), and "
                 "resending is off",
                 s->client->settle_window);
    uni1__reset_error(s);
    s->err.sent_at = sent_at;
    return uni1__fail(s, UNI1_ERR_UNCERTAIN,
                      "the generate request may have created a job (%.200s), and %s; look for "
                      "it (GET /v1/jobs) before submitting again",
                      cause, why);
}

/* The answer of a POST that got one: parsed, and claimed before the request
 * stops counting as in flight (uni1__ledger_send_end), so that no look sees
 * its job unclaimed. */
static uni1_status take_answer(uni1_session *s, const char *resp, size_t len, uni1_job *out,
                               double *cost)
{
    char err[256];
    uni1_status st = uni1_parse_submit(resp, len, out, cost, err, sizeof err);
    if (st != UNI1_OK)
        return uni1__fail_answer(s, st, "generate", "%s", err);
    if (uni1__claim_job(s->client, out->id) != 1)
        uni1__log(s, UNI1_LOG_WARNING, "submitted %s, a job this process already held", out->id);
    uni1__log(s, UNI1_LOG_INFO, "submitted %s (%s)", out->id, out->status);
    return UNI1_OK;
}

uni1_status uni1_generate_excluding(uni1_session *s, const uni1_generate_params *p,
                                    const char *const *exclude, size_t n_exclude, uni1_job *out,
                                    double *cost)
{
    char err[256];
    char *body = NULL;
    double c = -1;
    memset(out, 0, sizeof *out);
    if (cost)
        *cost = -1;
    uni1__reset_error(s);
    uni1_status st = uni1_build_generate_body(p, &body, err, sizeof err);
    if (st != UNI1_OK)
        return uni1__fail(s, st, "%s", err);
    wanted w;
    if (wanted_init(&w, s->client, body, 0, exclude, n_exclude) != 0) {
        free(body);
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    }
    uni1_api_call call = {"POST", GENERATE_PATH, NULL, body, strlen(body), 0, 1};
    /* uni1__api sends the POST once (not idempotent); this loop resends it
     * only once it is certain that no job was created. */
    uni1_retry retry;
    uni1__retry_init(&retry, s->client->max_retries);
    for (;;) {
        char *resp = NULL;
        size_t len = 0;
        long status = 0;
        w.sent_at = wall_clock();
        uni1__ledger_send_begin(w.request);
        st = uni1__api(s, &call, &resp, &len, &status);
        if (st == UNI1_OK)
            st = take_answer(s, resp, len, out, &c);
        uni1__ledger_send_end(w.request);
        free(resp);
        if (st == UNI1_OK)
            break;
        if (st == UNI1_ERR_PROTOCOL || st == UNI1_ERR_NOMEM)
            break; /* answered: the job exists, whatever its answer said */
        long http = s->err.http_status;
        int not_created =
            st == UNI1_ERR_CONNECT ||
            ((st == UNI1_ERR_TIMEOUT || st == UNI1_ERR_NETWORK) && !s->last_request_sent) ||
            (st == UNI1_ERR_HTTP && (http == 408 || http == 429));
        int maybe_created =
            ((st == UNI1_ERR_TIMEOUT || st == UNI1_ERR_NETWORK) && s->last_request_sent) ||
            (st == UNI1_ERR_HTTP && http >= 500);
        if (!not_created && !maybe_created)
            break; /* 400, 401, 403, 404, interrupted, ...: report as is */
        if (maybe_created) {
            /* Keep the error that made it uncertain while we look. */
            uni1_error saved = s->err;
            s->err.body = NULL;
            uni1__log(s, UNI1_LOG_INFO,
                      "POST %s: %s; looking for the job it may have created for %g s",
                      GENERATE_PATH, saved.message, s->client->settle_window);
            int r = settle(s, &w, uni1_monotonic() + s->client->settle_window, out);
            if (r == LOOK_FOUND) {
                free(saved.body);
                uni1__reset_error(s);
                uni1__log(s, UNI1_LOG_INFO, "adopted %s, created by the uncertain request",
                          out->id);
                st = UNI1_OK;
                break;
            }
            if (r != LOOK_NONE || !s->client->resend_uncertain) {
                st = uncertain(s, saved.message, r, w.sent_at);
                free(saved.body);
                break;
            }
            /* Certainly not created: the original error stands. */
            uni1__reset_error(s);
            s->err = saved;
        }
        if ((st = uni1__retry(s, &retry, st, "POST " GENERATE_PATH " (no job was created)")) !=
            UNI1_OK)
            break;
    }
    if (st == UNI1_OK && cost)
        *cost = c;
    if (st != UNI1_OK)
        uni1_job_clear(out);
    cJSON_Delete(w.body);
    free(body);
    return st;
}

uni1_status uni1_generate(uni1_session *s, const uni1_generate_params *p, uni1_job *out,
                          double *cost)
{
    return uni1_generate_excluding(s, p, NULL, 0, out, cost);
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
    wanted w;
    int r = LOOK_FAILED;
    if (wanted_init(&w, s->client, body, sent_at, exclude, n_exclude) != 0)
        uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    else
        r = look(s, &w, out);
    cJSON_Delete(w.body);
    free(body);
    if (r == LOOK_TWIN)
        return uni1__fail(s, UNI1_ERR_UNCERTAIN,
                          "an identical request of this process is still waiting for its "
                          "answer: a matching job cannot be told apart from its job");
    if (r < 0)
        return s->err.status != UNI1_OK ? s->err.status : UNI1_ERR_PROTOCOL;
    *found = r == LOOK_FOUND;
    return UNI1_OK;
}

uni1_status uni1_estimate(uni1_session *s, const uni1_generate_params *p, double *cost)
{
    char err[256];
    char *body = NULL;
    *cost = -1;
    uni1__reset_error(s);
    uni1_status st = uni1_build_generate_body(p, &body, err, sizeof err);
    if (st != UNI1_OK)
        return uni1__fail(s, st, "%s", err);
    /* A dry run creates nothing: retried like a read. */
    uni1_api_call call = {"POST", GENERATE_PATH, "dryRun=true", body, strlen(body), 1, 0};
    char *resp = NULL;
    size_t len = 0;
    long status = 0;
    st = uni1__api(s, &call, &resp, &len, &status);
    free(body);
    if (st != UNI1_OK)
        return st;
    if (status != 269 && status != 200) {
        free(resp);
        return uni1__fail(s, UNI1_ERR_PROTOCOL, "dry run answered HTTP %ld, expected 269", status);
    }
    st = uni1_parse_estimate(resp, len, cost, err, sizeof err);
    free(resp);
    if (st != UNI1_OK)
        return uni1__fail_answer(s, st, "dry run", "%s", err);
    return UNI1_OK;
}
