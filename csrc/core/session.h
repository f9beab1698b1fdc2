/* Private to the core: the client and session structs shared by client.c,
 * http.c and ops.c. Nothing here is part of the public API. */
#ifndef UNI1_SESSION_H
#define UNI1_SESSION_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>

#include "platform.h"
#include "uni1.h"

struct uni1_client {
    char *base_url;   /* normalised, no trailing slash, ends in the version */
    char *origin;     /* scheme://host[:port] of base_url */
    char *project_id; /* URL-escaped, or NULL */
    char *project_id_raw;
    char *auth_header; /* "Authorization: ..." (secret: never logged) */
    char *user_agent;
    char *ca_bundle; /* CURLOPT_CAINFO, NULL: libcurl's default (cacerts.c) */
    char *ca_path;   /* CURLOPT_CAPATH from SSL_CERT_DIR, or NULL */
    char *ca_tried;  /* no bundle found: the paths probed, for TLS errors */
    char *proxy;
    double connect_timeout, request_timeout, stall_timeout;
    double backoff_base, backoff_max;
    int max_retries;
    double settle_window; /* see uni1_options */
    /* How long "finalizing" lasts relative to the time before it, learned
     * from this client's finished jobs (uni1_wait_job); under lock. */
    double finalize_ratio;
    unsigned finalize_samples;
    int resend_uncertain;
    uni1_transport_fn transport;
    void *transport_userdata;
    uni1_log_fn log;
    void *log_userdata;

    pthread_mutex_t lock; /* guards the fields below; never held while calling
                             libcurl or user code (see pool.c) */
    uni1_session *free_sessions;
    unsigned n_free, sessions_out;
    /* Fork safety (pool.c): the sockets of this client's connections, the
     * number of forks this process is away from the one that made the
     * client, sessions inherited through a fork to clean up, and whether
     * they must be leaked instead. */
    curl_socket_t *socks;
    size_t n_socks, cap_socks;
    unsigned generation;
    uni1_session *graveyard;
    int leak_stale;
    uni1_client *reg_prev, *reg_next; /* all clients, under pool.c's registry lock */
    struct uni1_engine *engine;       /* engine.c: made at the first task, under lock */
};

/* Connections the engine's multi handle keeps open between transfers (more
 * are closed as their transfers end): enough to reuse for a steady stream of
 * polls, few enough that a burst leaves no crowd of idle sockets behind. */
#define UNI1_ENGINE_CONNECTIONS 16
/* Connections the engine opens at once to one host (the API, the CDN);
 * further transfers wait in libcurl's queue for one. */
#define UNI1_ENGINE_HOST_CONNECTIONS 64
/* Sessions of one engine's tasks that hold easy handles at once; a task that
 * needs its first handle beyond that waits (with its stack trimmed) for one
 * to be given back. 10,000 generations submitted at once would otherwise
 * each make an easy handle (libcurl 7.88 allocates a 16 KiB receive buffer
 * with each) and touch their stacks to the depth of a request while all but
 * a few dozen wait in libcurl's queue for a connection. Four times the
 * connections: the queue never runs dry. */
#define UNI1_ENGINE_HANDLES (4 * UNI1_ENGINE_HOST_CONNECTIONS)
/* A pause between a job's polls in the engine at least this long (seconds)
 * first gives back the session's easy handles and the unused part of the
 * task's stack (uni1_wait_job). */
#define UNI1_IDLE_PAUSE 0.25
/* How often a transfer parked in the engine looks at its byte count for the
 * stall clock (seconds). */
#define UNI1_STALL_LOOK 0.25
/* Idle sessions a client keeps; more are cleaned up as they come back. */
#define UNI1_IDLE_SESSIONS 4
/* Pool bookkeeping (pool.c): a new client joins the fork registry; a client
 * being freed leaves it and cleans up its idle sessions. */
void uni1__pool_register(uni1_client *c);
void uni1__pool_free(uni1_client *c);
/* Makes e open and close its sockets through the client's records, so a
 * forked child can disown them. */
void uni1__track_sockets(uni1_client *c, CURL *e);

/* CA certificates (cacerts.c). uni1__ca_choose runs once per client: the
 * bundle given (ca_bundle, SSL_CERT_FILE, CURL_CA_BUNDLE), else SSL_CERT_DIR
 * and the first readable file of uni1__ca_files, then o->ca_fallback; 0 or
 * -1 (out of memory). uni1__ca_apply sets them on a handle; uni1__ca_note
 * is "" or the paths tried when none was found. uni1__ca_probe looks for
 * the files under root (NULL: "/"; tests pass a directory) and fills
 * *found or *tried (malloc'd); -1 out of memory. */
extern const char *const uni1__ca_files[];
int uni1__ca_probe(const char *root, const char *fallback, char **found, char **tried);
int uni1__ca_choose(uni1_client *c, const uni1_options *o);
void uni1__ca_apply(const uni1_client *c, CURL *e);
const char *uni1__ca_note(const uni1_client *c);

/* Records in the process-wide ledger (ledger.h) that the job is held by a
 * caller of this process: reconciling another submission never adopts it.
 * 1 when it was free, 0 when already claimed, -1 out of memory. */
int uni1__claim_job(uni1_client *c, const char *id);
/* Whether the job is claimed (by any client of the process on c's server). */
int uni1__is_known_job(uni1_client *c, const char *id);

typedef struct uni1_response_meta {
    long status;
    double retry_after; /* from Retry-After, or -1 */
    char content_type[64];
    long long content_length; /* -1 when unknown */
    int request_sent;         /* the request reached the wire */
    /* Downloads only: the answer's status line and Content-Range. */
    long head_status;
    int has_range;
    long long range_start, range_end, range_total;
    size_t header_bytes;  /* response header bytes seen in this transfer */
    int headers_done;     /* the current header block has ended */
    int header_too_large; /* header_bytes passed UNI1_HEADER_CAP */
} uni1_response_meta;

/* The most response header bytes one transfer takes (redirects included),
 * below libcurl's own limit so that the error says what happened. */
#define UNI1_HEADER_CAP (256u << 10)

/* The most bytes a download takes when neither the asset record nor the CDN
 * declares a size (an image of this API is a few MiB). */
#define UNI1_DOWNLOAD_CAP ((long long)512 << 20)

/* Where a response body goes: a growable buffer with a cap, or a file. */
typedef struct uni1_sink {
    uni1_buffer *buf;  /* to memory ... */
    int fd;            /* ... or to a file descriptor (-1: memory) */
    size_t cap;        /* most bytes accepted into memory */
    long long written; /* bytes written in this transfer */
    int failed;        /* 1: cap exceeded, 2: write(2) failed, 3: no memory,
                          or a uni1_cdn_verdict + 10 (downloads: answer refused),
                          or 20: more bytes than declared */
    int saved_errno;
    /* Downloads (set by the caller): what is already kept, where the data
     * begins in fd, and the asset record's size (<= 0: not given). */
    long long offset, origin, expect;
    /* Set per transfer by uni1__setup_download and the first body byte. */
    CURL *easy;
    uni1_response_meta *meta;
    int begun;       /* 0: no body yet; 1: keeping; 2: discarding (error page) */
    int restarted;   /* a 200 to a Range request replaced what was kept */
    long long total; /* the object's full size, -1: nobody said */
    long long limit; /* the most bytes this transfer may carry */
} uni1_sink;

/* After a download transfer ended well: whether the sink holds every byte
 * of the object as far as anyone declared its size. */
int uni1__download_complete(const uni1_sink *k);
/* Where a download restarts from zero: the destination back to origin. */
int uni1__sink_rewind(uni1_sink *k);

struct uni1_session {
    uni1_client *client;
    uni1_session *next_free;
    CURLM *multi;
    CURL *api; /* easy handle for API requests (keeps conns) */
    CURL *cdn; /* easy handle for downloads, never has auth */
    uni1_error err;
    uni1_interrupt_fn interrupt;
    void *interrupt_userdata;
    double deadline;
    double last_interrupt_check;
    uint64_t requests;
    int last_request_sent; /* the last attempt's request reached the wire */
    unsigned int rng;      /* jitter state, seeded per session */
    unsigned generation;   /* the client's generation when this was made */
    uni1_task *task;       /* the engine task running on this session, or NULL */
    int holds_slot;        /* counted in its engine's UNI1_ENGINE_HANDLES */
};

/* The session's libcurl handles, made at first use (NULL when out of
 * memory): its own multi handle (a caller's thread only) and its easy
 * handles for the API and the CDN (pool.c). uni1__session_idle drops the easy
 * handles of a session parked in the engine for a while (their connections
 * stay in the engine's cache): a job waited on costs no handle. */
CURLM *uni1__session_multi(uni1_session *s);
CURL *uni1__session_easy(uni1_session *s, int cdn);
void uni1__session_idle(uni1_session *s);

/* Error helpers: set the session's error (status + formatted message; for
 * UNI1_ERR_PROTOCOL, UNI1_MALFORMED ": " comes first). */
uni1_status uni1__fail(uni1_session *s, uni1_status st, const char *fmt, ...) UNI1_PRINTF(3, 4);
/* An answer to `what` (e.g. "generate") that could not be used: the message
 * is UNI1_MALFORMED " (what): " and the formatted text, whatever st is (a
 * parser's UNI1_ERR_NOMEM keeps its status). */
uni1_status uni1__fail_answer(uni1_session *s, uni1_status st, const char *what, const char *fmt,
                              ...) UNI1_PRINTF(4, 5);
void uni1__reset_error(uni1_session *s);
/* UNI1_ERR_IO for a failed system call: the message is the formatted text,
 * ": ", and strerror(errnum); errnum is kept in the error's os_errno. */
uni1_status uni1__fail_os(uni1_session *s, int errnum, const char *fmt, ...) UNI1_PRINTF(3, 4);
void uni1__log(uni1_session *s, uni1_log_level level, const char *fmt, ...) UNI1_PRINTF(3, 4);

/* An answer to GET /things/{asked} about another id (a mixed-up connection,
 * a confused gateway) is never taken for the one asked about: UNI1_OK when
 * got equals asked, else UNI1_ERR_PROTOCOL naming both. */
uni1_status uni1__same_id(uni1_session *s, const char *path, const char *what, const char *asked,
                          const char *got);

/* Sleeps for `seconds` (bounded by the deadline), waking every
 * UNI1_WAKE_INTERVAL_MS to run the interrupt callback. UNI1_OK, or
 * UNI1_ERR_INTERRUPTED / UNI1_ERR_TIMEOUT (deadline reached first). */
uni1_status uni1__sleep(uni1_session *s, double seconds);
/* Whether the caller asked the session to stop: the interrupt callback on a
 * caller's thread, uni1_task_cancel in the engine. */
int uni1__stopped(uni1_session *s);

/* One API request, with retries when `idempotent`. path is relative to the
 * base URL and starts with '/'; query (may be NULL) is "a=b&c=d" without
 * projectId (added here). On UNI1_OK the answer was 2xx (or 269) and its body
 * is in *body (NUL-terminated, caller frees with free()); *http_status set.
 * On an HTTP error the session error holds status, message and body. */
typedef struct uni1_api_call {
    const char *method;
    const char *path;
    const char *query;
    const char *body;
    size_t body_len;
    int idempotent;       /* retry transient failures */
    int fresh_connection; /* never reuse a connection (non-idempotent POST) */
} uni1_api_call;
uni1_status uni1__api(uni1_session *s, const uni1_api_call *call, char **body, size_t *body_len,
                      long *http_status);

/* The transport pieces of http.c that download.c builds on. */
/* Memory sinks: room for cap bytes (at most the sink's cap) in one
 * allocation. 0, or -1 when out of memory. */
int uni1__sink_reserve(uni1_sink *k, size_t cap);
/* libcurl write callback: appends to sink's buffer (within its cap) or fd. */
size_t uni1__sink_write(char *ptr, size_t size, size_t nmemb, void *userdata);
/* libcurl header callback: Retry-After, Content-Type, Content-Length into a
 * uni1_response_meta. */
size_t uni1__header_cb(char *buf, size_t size, size_t nitems, void *userdata);
/* A libcurl result as a session error ("what" prefixes the message). */
uni1_status uni1__map_curl(uni1_session *s, CURLcode rc, const uni1_response_meta *m,
                           const uni1_sink *sink, const char *what);
/* Whether a transfer still waits in the engine's queue for a connection
 * (UNI1_ENGINE_HOST_CONNECTIONS): that time is not a stall. */
int uni1__xfer_queued(CURL *easy);
/* Bytes moved so far by a transfer, both ways. */
curl_off_t uni1__bytes_moved(CURL *easy);
/* Drives one easy handle to completion on the session's multi handle, with
 * the deadline, interrupt checks and (watch_stall) the stall clock. */
uni1_status uni1__run_transfer(uni1_session *s, CURL *easy, uni1_response_meta *m,
                               const uni1_sink *sink, const char *what, int watch_stall);
/* Options every handle gets: callbacks into sink and m, user agent, connect
 * and stall timeouts, protocols, CA bundle, proxy. Resets m. */
void uni1__set_common(uni1_session *s, CURL *e, uni1_response_meta *m, uni1_sink *sink);
/* The URL with its query string removed, for logs (signed URLs carry secrets
 * of their own). */
void uni1__url_for_log(const char *url, char *out, size_t n);

/* One download attempt series to a sink, retrying transient failures and
 * resuming with Range (into memory or a file descriptor). sink->expect is
 * the asset record's size (<= 0: unknown): a body that ends short of it
 * resumes, one that runs past it fails. A 206 must be the range asked for,
 * a 200 to a Range request restarts from zero, a text answer is refused. */
uni1_status uni1__download(uni1_session *s, const char *url, uni1_sink *sink, char *content_type,
                           size_t ct_len);

/* Resets e and sets it up to GET url into sink with no credentials,
 * following redirects (also without credentials). */
void uni1__setup_download(uni1_session *s, CURL *e, uni1_response_meta *m, uni1_sink *sink,
                          const char *url);
/* Drives n prepared easy handles at once on the session's multi handle until
 * all are done, with the usual interrupt checks and deadline. results[i] gets
 * each transfer's CURLcode and metas[i].status its HTTP status. UNI1_OK when
 * every transfer ended (well or badly); otherwise why the loop stopped. */
uni1_status uni1__run_parallel(uni1_session *s, CURL **easies, size_t n, CURLcode *results,
                               uni1_response_meta *metas);

/* The transfer loop of a session, the same code on a caller's thread and in
 * the engine. loop_add hands an easy handle to the session's own multi handle
 * or to the engine's (its CURLOPT_PRIVATE becomes x, which says when it
 * ended); loop_pump, on a caller's thread, runs the session's multi handle
 * and marks finished transfers (in the engine, the engine does that);
 * loop_wait ends one turn: on a caller's thread the interrupt callback (at
 * most every UNI1_WAKE_INTERVAL_MS) then a poll bounded by that interval and
 * the deadline; in the engine a park until a transfer of the task ends, the
 * task is cancelled or wake_at (> 0) comes. UNI1_OK, or UNI1_ERR_INTERRUPTED
 * with the session error set. */
struct uni1_xfer;
CURLMcode uni1__loop_add(uni1_session *s, CURL *e, struct uni1_xfer *x);
void uni1__loop_remove(uni1_session *s, CURL *e);
CURLMcode uni1__loop_pump(uni1_session *s);
uni1_status uni1__loop_wait(uni1_session *s, double now, double wake_at);

/* One PUT of data[0..len) to url on the session's CDN handle (upload parts):
 * never an Authorization header, no redirect followed, no "Expect:
 * 100-continue". `what` prefixes messages ("upload part 2 of 3"); the URL
 * shows in them without its query string. UNI1_OK for a 2xx answer;
 * UNI1_ERR_HTTP with http_status, retry_after and the answer's body (owned
 * by the session) for any other status; else a transport status. One
 * attempt: the caller decides about retries. */
uni1_status uni1__put(uni1_session *s, const char *url, const void *data, size_t len,
                      const char *what);

#endif
