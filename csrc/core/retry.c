/* The one retry policy of the core: what is retried, how often, and after
 * how long (see retry.h). */
#include <stdlib.h>

#include "platform.h"
#include "retry.h"

void uni1__retry_init(uni1_retry *r, int budget)
{
    r->attempt = 0;
    r->budget = budget > 0 ? budget : 0;
}

/* Full jitter (uniform in [0, cap]) over a cap that doubles from
 * backoff_base up to backoff_max with each retry: clients that failed
 * together do not come back together. */
static double backoff(uni1_session *s, int attempt)
{
    double cap = s->client->backoff_base;
    for (int i = 0; i < attempt && cap < s->client->backoff_max; i++)
        cap *= 2;
    if (cap > s->client->backoff_max)
        cap = s->client->backoff_max;
    return cap * uni1__rand01(&s->rng);
}

double uni1__retry_next(uni1_session *s, uni1_retry *r, uni1_status st)
{
    long http = st == UNI1_ERR_HTTP ? s->err.http_status : 0;
    if (!uni1_status_is_retryable(st, http) || r->attempt >= r->budget)
        return -1;
    double wait = backoff(s, r->attempt);
    /* The server's word on when to come back; a longer one is a guess at
     * best (or hostile), and the caller's deadline bounds it anyway. */
    if ((http == 429 || http == 503) && s->err.retry_after >= 0) {
        double ra =
            s->err.retry_after < UNI1_RETRY_AFTER_CAP ? s->err.retry_after : UNI1_RETRY_AFTER_CAP;
        if (ra > wait)
            wait = ra;
    }
    if (s->deadline > 0 && uni1_monotonic() + wait >= s->deadline)
        return -1;
    r->attempt++;
    return wait;
}

uni1_status uni1__retry(uni1_session *s, uni1_retry *r, uni1_status st, const char *what)
{
    double wait = uni1__retry_next(s, r, st);
    if (wait < 0)
        return st;
    uni1__log(s, UNI1_LOG_INFO, "%s: %s; retry %d of %d in %.2f s", what, s->err.message,
              r->attempt, r->budget, wait);
    /* The error stays the one to report if the next attempt is cut short
     * before it sends anything; only a pause cut short replaces it. */
    char *body = s->err.body;
    size_t body_len = s->err.body_len;
    s->err.body = NULL;
    uni1_status sl = uni1__sleep(s, wait);
    if (sl == UNI1_OK) {
        s->err.body = body;
        s->err.body_len = body_len;
    } else {
        free(body); /* the error now says why the pause stopped */
        s->err.body_len = 0;
    }
    return sl;
}
