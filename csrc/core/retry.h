/* Private to the core: the one retry policy (retry.c). Every loop that sends
 * a request again after a failure (API calls, upload parts and their
 * completion, downloads, the generate resend) asks it whether to go again
 * and after how long, and pauses through it. */
#ifndef UNI1_RETRY_H
#define UNI1_RETRY_H

#include "session.h"

/* The longest a Retry-After / remainingSeconds is honoured (seconds); the
 * caller's deadline still bounds every wait. */
#define UNI1_RETRY_AFTER_CAP 60.0

/* One series of attempts of one request. */
typedef struct uni1_retry {
    int attempt; /* retries decided so far */
    int budget;  /* the most retries allowed */
} uni1_retry;

/* A series allowed `budget` retries (e.g. the client's max_retries; 0 for a
 * request never sent twice). */
void uni1__retry_init(uni1_retry *r, int budget);

/* The policy, for a failure `st` whose details are in the session error
 * (http_status, retry_after): the seconds to wait before the next attempt,
 * or -1 to stop and report the failure. It stops when st cannot be cured by
 * a repeat (uni1_status_is_retryable), when the budget is spent, and when
 * the wait would reach the session deadline (reporting the failure now
 * beats reporting a timeout after waiting). The wait is full-jitter
 * exponential backoff from the client's backoff_base to backoff_max, or for
 * a 429 or 503 at least the server's Retry-After (capped at
 * UNI1_RETRY_AFTER_CAP). A wait is counted against the budget. */
double uni1__retry_next(uni1_session *s, uni1_retry *r, uni1_status st);

/* uni1__retry_next, then (when it says go on) a log line naming `what` and
 * the pause. UNI1_OK to send again, the session error untouched (its body
 * kept); otherwise the status to report: st itself when the policy stops,
 * UNI1_ERR_INTERRUPTED / UNI1_ERR_TIMEOUT when the pause was cut short. */
uni1_status uni1__retry(uni1_session *s, uni1_retry *r, uni1_status st, const char *what);

#endif
