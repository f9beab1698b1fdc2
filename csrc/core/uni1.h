/*
 * uni1.h - a plain C client for Scenario's Luma Uni-1 Max image model.
 *
 * This is the one public header of the core. It needs libcurl and cJSON and
 * nothing else; it knows nothing of Python.
 *
 * LIFECYCLE
 *   1. uni1_global_init() once per process, before any thread uses the library
 *      (it calls curl_global_init). uni1_global_cleanup() at the very end.
 *   2. uni1_options_init(&o), set the fields you need, then
 *      uni1_client_new(&o, errbuf, sizeof errbuf). The client copies every
 *      string it is given; the options struct may be freed right after.
 *   3. For each piece of work: s = uni1_session_acquire(client), call the
 *      operations with s, read uni1_session_error(s) when one fails, then
 *      uni1_session_release(s). Released sessions go back to a pool owned by
 *      the client, so their connections (kept by a libcurl multi handle) are
 *      reused by the next acquire.
 *   4. uni1_client_free(client) once no session is out.
 *
 * THREADING
 *   - A uni1_client is immutable after creation and may be shared by any
 *     number of threads. acquire/release are thread-safe.
 *   - A uni1_session is used by one thread at a time. Two threads that work at
 *     once acquire two sessions. The only session call allowed from another
 *     thread is uni1_session_wakeup().
 *   - Parsers, validators and body builders are pure functions: any thread.
 *   - No call ever raises a signal or relies on one (CURLOPT_NOSIGNAL is set on
 *     every handle).
 *
 * WAITING AND INTERRUPTS
 *   Every operation that touches the network waits in a loop that wakes at
 *   least every UNI1_WAKE_INTERVAL_MS milliseconds and then calls the session's
 *   interrupt callback (uni1_session_set_interrupt). A non-zero return aborts
 *   the operation with UNI1_ERR_INTERRUPTED. The CPython binding uses this to
 *   take the GIL back and check for Ctrl-C. The session deadline
 *   (uni1_session_set_deadline, on the uni1_monotonic() clock) bounds every
 *   request and every sleep; passing it gives UNI1_ERR_TIMEOUT.
 *
 * OWNERSHIP
 *   - Strings passed in are borrowed for the duration of the call only.
 *   - Structs filled by the library (uni1_job, uni1_asset, uni1_job_list,
 *     uni1_buffer) own heap memory; release it with the matching *_clear()
 *     function. A cleared struct is all zeros and may be filled again.
 *     Output structs are write-only: the library zeroes them before filling
 *     and never frees what they held, so clear a filled struct before passing
 *     it again, or it leaks.
 *   - Pointers returned by *_name() functions are static strings.
 *   - uni1_session_error() points into the session; it stays valid until the
 *     next operation on that session or its release.
 *
 * CREDENTIALS
 *   The Authorization header is only ever sent to the API base URL. Downloads
 *   (signed CDN URLs) go without it, and redirects are followed without it.
 *   Error messages, logs and the uni1_error struct never contain credentials.
 */
#ifndef UNI1_H
#define UNI1_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UNI1_VERSION "0.1.0"
#define UNI1_DEFAULT_BASE_URL "https://api.cloud.scenario.com/v1"
#define UNI1_MODEL_ID "model_luma-uni-1-max"
#define UNI1_WAKE_INTERVAL_MS 50
#define UNI1_STALL_TIMEOUT_DEFAULT 30.0 /* seconds; see uni1_options.stall_timeout */
#define UNI1_PROMPT_MAX_CHARS 6000
#define UNI1_MAX_REFS 9
#define UNI1_MAX_REFS_WITH_SOURCE 8
#define UNI1_ID_MAX 128 /* longest job or asset id we accept */
/* The default settle window (uni1_options.settle_window), in seconds. A
 * backend behind a gateway goes on with a request the gateway gave up on;
 * jobs have been seen to appear 8 s after the gateway's 504. 20 s covers
 * that 2.5 times over, for a backend under more load than when it was
 * measured, at the cost of one listing every 2 s or so; and it only ever
 * delays a submission that already failed, against a second paid job. */
#define UNI1_SETTLE_WINDOW 20.0
#define UNI1_SETTLE_WINDOW_MAX 3600.0

/* ------------------------------------------------------------------------ */
/* Status codes                                                             */
/* ------------------------------------------------------------------------ */

/* Every fallible call returns one of these. Details (HTTP status, server
 * message) live in the session's uni1_error, not in a global. */
typedef enum uni1_status {
    UNI1_OK = 0,
    UNI1_ERR_INVALID,      /* an argument was rejected; no request was sent */
    UNI1_ERR_CONFIG,       /* unusable settings (no credentials, bad URL) */
    UNI1_ERR_NOMEM,        /* an allocation failed */
    UNI1_ERR_CONNECT,      /* could not connect: the request was NOT sent */
    UNI1_ERR_NETWORK,      /* the connection broke after the request may
                              have been sent, or mid-response */
    UNI1_ERR_TIMEOUT,      /* deadline passed, or a transfer stalled */
    UNI1_ERR_TLS,          /* certificate or handshake failure */
    UNI1_ERR_HTTP,         /* the server answered an error status; see
                              uni1_error.http_status / message / body */
    UNI1_ERR_PROTOCOL,     /* the server's data is malformed or unexpected;
                              the message starts with UNI1_MALFORMED */
    UNI1_ERR_IO,           /* a local file could not be read or written */
    UNI1_ERR_EXISTS,       /* download target exists and overwrite is off */
    UNI1_ERR_INTERRUPTED,  /* the interrupt callback asked to stop */
    UNI1_ERR_JOB_FAILED,   /* uni1_wait_job: the job ended in failure */
    UNI1_ERR_JOB_CANCELED, /* uni1_wait_job: the job was canceled */
    UNI1_ERR_UNCERTAIN,    /* a generate request may have created a job
                              that could not be found */
    UNI1_STATUS_COUNT
} uni1_status;

/* The first words of every UNI1_ERR_PROTOCOL message, written by the core
 * (callers show the message as it is). */
#define UNI1_MALFORMED "malformed response from server"

/* "UNI1_OK", "UNI1_ERR_INVALID", ...; "UNI1_ERR_UNKNOWN" for out-of-range. */
const char *uni1_status_name(uni1_status st);

/* Whether repeating a READ that failed this way may succeed: connection
 * failures, network drops, timeouts, and HTTP 408, 429 and 5xx. http_status
 * is only looked at for UNI1_ERR_HTTP. Never true for 400/401/403/404. */
int uni1_status_is_retryable(uni1_status st, long http_status);

/* Who worded uni1_error.message. A caller that words its own text (the
 * Python binding: "HTTP 404: <reason>", an upload that failed) decides from
 * this field, never by reading the message. */
typedef enum uni1_message_source {
    UNI1_MSG_CORE = 0, /* the core's account of what failed and where (every
                          status; for UNI1_ERR_HTTP, an answer of the CDN, e.g.
                          "download: HTTP 403 from host") */
    UNI1_MSG_SERVER,   /* UNI1_ERR_HTTP: the API's own message, from its error
                          body */
    UNI1_MSG_NONE,     /* UNI1_ERR_HTTP: the API's error answer carried no
                          message; message is just "HTTP <n>", for logs */
    UNI1_MSG_UPLOAD    /* UNI1_ERR_HTTP with http_status 0: no error answer,
                          the server ended an upload "failed"; message names
                          the upload and gives the server's reason, body holds
                          the upload record */
} uni1_message_source;

/* The last error of a session. */
typedef struct uni1_error {
    uni1_status status;
    long http_status;  /* 0 when no HTTP answer was read */
    char message[512]; /* human readable; never holds credentials */
    char *body;        /* the server's error body (NUL-terminated), or
                          NULL; owned by the session */
    size_t body_len;
    char trace_id[128]; /* "" when the server gave none */
    double retry_after; /* seconds the server asked us to wait (the
                           larger of Retry-After and remainingSeconds),
                           or -1 when it gave none */
    int os_errno;       /* UNI1_ERR_IO: the errno of the system call that
                           failed (ENOSPC, EACCES, ...), or 0 */
    double sent_at;     /* UNI1_ERR_UNCERTAIN: when the request that
                           may have created a job was sent (Unix time,
                           seconds); 0 otherwise */
    /* Who worded message: the binding's mapping reads this, not the text. */
    uni1_message_source source;
} uni1_error;

/* Clock used for deadlines: seconds, monotonic, arbitrary origin. */
double uni1_monotonic(void);

/* ------------------------------------------------------------------------ */
/* Global setup                                                             */
/* ------------------------------------------------------------------------ */

/* Call once before any other function, while only one thread runs. Returns
 * UNI1_ERR_CONFIG when libcurl is too old (before 7.68: no curl_multi_poll) or
 * lacks HTTP/SSL. Safe to call more than once. */
uni1_status uni1_global_init(char *errbuf, size_t errlen);
void uni1_global_cleanup(void);
/* The linked libcurl's version string, e.g. "7.88.1". */
const char *uni1_curl_version(void);

/* ------------------------------------------------------------------------ */
/* Pluggable transport (tests and fuzzers run with no network)              */
/* ------------------------------------------------------------------------ */

typedef struct uni1_http_request {
    const char *method;         /* "GET", "POST" */
    const char *url;            /* full URL, query included */
    const char *const *headers; /* "Name: value" lines */
    size_t n_headers;
    const char *body; /* NULL for no body */
    size_t body_len;
} uni1_http_request;

typedef struct uni1_http_response {
    long status; /* HTTP status */
    char *body;  /* malloc'd by the transport, freed by
                    the library; may be NULL */
    size_t body_len;
    double retry_after; /* Retry-After header in seconds, or -1 */
} uni1_http_response;

/* Replaces libcurl for API requests (not downloads) when set in the options.
 * Returns UNI1_OK when an HTTP answer (any status) was read, or a transport
 * status (UNI1_ERR_CONNECT, UNI1_ERR_NETWORK, UNI1_ERR_TIMEOUT). */
typedef uni1_status (*uni1_transport_fn)(void *userdata, const uni1_http_request *req,
                                         uni1_http_response *resp);

/* ------------------------------------------------------------------------ */
/* Client                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum uni1_log_level {
    UNI1_LOG_DEBUG = 10,
    UNI1_LOG_INFO = 20,
    UNI1_LOG_WARNING = 30
} uni1_log_level;
/* Called from whatever thread runs the operation. Messages never contain
 * credentials or signed URL query strings. */
typedef void (*uni1_log_fn)(void *userdata, uni1_log_level level, const char *message);

typedef struct uni1_options {
    const char *api_key;         /* Basic auth key ... */
    const char *api_secret;      /* ... and secret; or: */
    const char *bearer_token;    /* used when api_key is NULL */
    const char *base_url;        /* NULL: UNI1_DEFAULT_BASE_URL. A URL with no
                                    path gets "/v1" appended. */
    const char *project_id;      /* sent as ?projectId= on every request */
    const char *user_agent;      /* NULL: "scenario-uni1/VERSION libcurl/X" */
    const char *ca_bundle;       /* PEM file; NULL: SSL_CERT_FILE, then
                                    CURL_CA_BUNDLE, then the system's: the
                                    directory SSL_CERT_DIR and the first
                                    bundle found at the known paths of
                                    Linux, BSD and macOS layouts, then
                                    ca_fallback */
    const char *ca_fallback;     /* PEM file tried last (the Python glue
                                    passes certifi's), or NULL */
    const char *proxy;           /* NULL: libcurl honours the *_proxy variables */
    double connect_timeout;      /* seconds; default 10 */
    double request_timeout;      /* seconds for one API request; default 60 */
    double stall_timeout;        /* a transfer with no bytes for this long
                                    fails with UNI1_ERR_TIMEOUT; 0 (the
                                    default): the smaller of
                                    UNI1_STALL_TIMEOUT_DEFAULT and
                                    request_timeout */
    int max_retries;             /* retries of READS (job, asset, list, CDN);
                                    default 3 */
    double backoff_base;         /* seconds; default 0.5. Retry n
                                    (0-based) waits uniformly in [0,
                                    min(backoff_base * 2^n, backoff_max)],
                                    or after a 429 or 503 at least its
                                    retry_after (at most 60 s); a wait
                                    that would reach the deadline is not
                                    taken: the failure is reported */
    double backoff_max;          /* seconds; default 20 */
    uni1_transport_fn transport; /* NULL: libcurl */
    void *transport_userdata;
    uni1_log_fn log; /* NULL: no logging */
    void *log_userdata;
    double settle_window; /* seconds a generate request whose outcome
                             is uncertain (sent, then a 5xx, a reset
                             or a timeout) keeps looking for the job it
                             may have created; default
                             UNI1_SETTLE_WINDOW; 0 looks once. See
                             uni1_generate. */
    int resend_uncertain; /* 1 (default): when the whole window shows
                             no such job, send the request again;
                             0: answer UNI1_ERR_UNCERTAIN instead */
    unsigned int sanity;  /* set by uni1_options_init; lets the struct
                             grow without breaking old callers */
} uni1_options;

void uni1_options_init(uni1_options *o);

typedef struct uni1_client uni1_client;

/* NULL on failure, with the reason in errbuf (never a credential). Requires
 * api_key+api_secret or bearer_token. */
uni1_client *uni1_client_new(const uni1_options *o, char *errbuf, size_t errlen);
/* The same, saying why it failed: UNI1_ERR_CONFIG (unusable options, or
 * libcurl unusable) or UNI1_ERR_NOMEM, with the reason in errbuf; *out is
 * the client on UNI1_OK, else NULL. */
uni1_status uni1_client_create(const uni1_options *o, uni1_client **out, char *errbuf,
                               size_t errlen);
void uni1_client_free(uni1_client *c);
/* The normalised base URL ("http://127.0.0.1:8080/v1"); owned by the client. */
const char *uni1_client_base_url(const uni1_client *c);
const char *uni1_client_project_id(const uni1_client *c); /* NULL if unset */

/* ------------------------------------------------------------------------ */
/* Sessions                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct uni1_session uni1_session;

/* Returns 0 to go on, non-zero to abort the running operation with
 * UNI1_ERR_INTERRUPTED. Called at least every UNI1_WAKE_INTERVAL_MS while an
 * operation waits, on the thread that runs it. */
typedef int (*uni1_interrupt_fn)(void *userdata);

/* From the pool, or a new one; NULL on allocation failure. Interrupt and
 * deadline are reset to none. */
uni1_session *uni1_session_acquire(uni1_client *c);
void uni1_session_release(uni1_session *s);
void uni1_session_set_interrupt(uni1_session *s, uni1_interrupt_fn fn, void *userdata);
/* Absolute uni1_monotonic() time; 0 means no deadline. */
void uni1_session_set_deadline(uni1_session *s, double deadline);
/* Thread-safe: makes a waiting operation call its interrupt callback now. */
void uni1_session_wakeup(uni1_session *s);
const uni1_error *uni1_session_error(const uni1_session *s);
/* Requests sent (attempts included) by this session since it was created;
 * for tests and benchmarks. */
uint64_t uni1_session_request_count(const uni1_session *s);

/* ------------------------------------------------------------------------ */
/* Data types                                                               */
/* ------------------------------------------------------------------------ */

typedef enum uni1_job_state {
    UNI1_JOB_UNKNOWN = 0, /* a status string we do not know: non-terminal */
    UNI1_JOB_PENDING,
    UNI1_JOB_QUEUED,
    UNI1_JOB_WARMING_UP,
    UNI1_JOB_IN_PROGRESS,
    UNI1_JOB_FINALIZING,
    UNI1_JOB_SUCCESS, /* also "succeeded" */
    UNI1_JOB_FAILURE, /* also "failed" */
    UNI1_JOB_CANCELED /* also "cancelled" */
} uni1_job_state;

/* Maps a server status string (case-sensitive, synonyms included). */
uni1_job_state uni1_job_state_from_string(const char *s);
/* The canonical string: "pending", ..., "success", "failure", "canceled";
 * "unknown" for UNI1_JOB_UNKNOWN. */
const char *uni1_job_state_name(uni1_job_state st);
int uni1_job_state_is_terminal(uni1_job_state st);

typedef struct uni1_job {
    char id[UNI1_ID_MAX]; /* from "jobId", or "id" */
    uni1_job_state state;
    char status[32];  /* canonical name, or the server's own string
                         (truncated) when state is UNKNOWN */
    double progress;  /* 0..1, clamped; 0 when absent */
    char **asset_ids; /* metadata.assetIds; n_assets entries */
    size_t n_assets;
    char *error;         /* failure reason or NULL */
    char *hint;          /* metadata.hint or NULL */
    char created_at[40]; /* ISO 8601 as sent, "" if absent */
    char *raw_json;      /* the job object re-serialised (unformatted),
                            unknown fields kept */
    size_t raw_len;
    /* From statusHistory (Unix seconds, server clock), or -1 when absent:
     * when the job was created, entered "finalizing", reached "success". */
    double created_ts, finalizing_ts, success_ts;
} uni1_job;
void uni1_job_clear(uni1_job *j);
/* Deep copy; UNI1_ERR_NOMEM on failure (dst left cleared). */
uni1_status uni1_job_copy(uni1_job *dst, const uni1_job *src);

typedef struct uni1_job_list {
    uni1_job *jobs;
    size_t n_jobs;
    char *next_token; /* NULL on the last page */
} uni1_job_list;
void uni1_job_list_clear(uni1_job_list *l);

typedef struct uni1_asset {
    char id[UNI1_ID_MAX];
    char *url;          /* signed CDN URL, or NULL while pending */
    char mime_type[64]; /* "" when absent */
    char status[16];    /* "pending", "success", "error" or "" */
    long width, height; /* 0 when absent */
    long long size;     /* bytes; -1 when the server gave none (a
                           cleared struct reads 0) */
    char *raw_json;
    size_t raw_len;
} uni1_asset;
void uni1_asset_clear(uni1_asset *a);

typedef struct uni1_buffer {
    unsigned char *data;
    size_t len, cap;
} uni1_buffer;
void uni1_buffer_clear(uni1_buffer *b);

typedef enum uni1_format { UNI1_FORMAT_PNG = 0, UNI1_FORMAT_JPEG = 1 } uni1_format;

typedef struct uni1_generate_params {
    const char *prompt;            /* UTF-8, 1..6000 code points */
    const char *source;            /* asset id or NULL */
    const char *const *image_refs; /* asset ids */
    size_t n_image_refs;
    const char *aspect_ratio; /* NULL: server default (3:2) */
    uni1_format output_format;
    int web_search;
} uni1_generate_params;

/* ------------------------------------------------------------------------ */
/* Pure functions: validation, request bodies, parsers of server data       */
/* ------------------------------------------------------------------------ */

/* UNI1_ERR_INVALID with a message in err when a field breaks the contract:
 * empty or over-long prompt, invalid UTF-8, too many references, an id that is
 * not "asset_" followed by [A-Za-z0-9_-]+, an unknown aspect ratio. */
uni1_status uni1_validate_generate(const uni1_generate_params *p, char *err, size_t errlen);
/* Whether s looks like an asset id ("asset_" then 1..UNI1_ID_MAX-7 of
 * [A-Za-z0-9_-]). */
int uni1_is_asset_id(const char *s);
/* Whether s is a known aspect ratio; the list is in uni1_aspect_ratios. */
int uni1_is_aspect_ratio(const char *s);
extern const char *const uni1_aspect_ratios[]; /* NULL-terminated */

/* Validates, then writes the JSON body to *out (malloc'd, caller frees).
 * imageRef is always an array (a bare string is silently dropped by the
 * server); fields left at their defaults are omitted. */
uni1_status uni1_build_generate_body(const uni1_generate_params *p, char **out, char *err,
                                     size_t errlen);

/* Parsers take a buffer that need not be NUL-terminated. On failure they
 * return UNI1_ERR_PROTOCOL (or UNI1_ERR_NOMEM; UNI1_ERR_INVALID for a NULL
 * output pointer) with a message in err, and the output is left cleared.
 * They never read past len. Invalid UTF-8, raw NUL bytes and nesting deeper
 * than 1000 are protocol errors; ids that go into URLs are checked for
 * [A-Za-z0-9_-] and length. An allocation failure inside cJSON cannot be told
 * from bad syntax and reports as UNI1_ERR_PROTOCOL. */

/* {"job": {...}} or a bare job object. */
uni1_status uni1_parse_job(const char *buf, size_t len, uni1_job *out, char *err, size_t errlen);
/* The generate answer: {"job": {...}, "creativeUnitsCost": n, ...}; *cost is
 * set to -1 when absent or unusable (an odd cost never hides a paid job). */
uni1_status uni1_parse_submit(const char *buf, size_t len, uni1_job *out, double *cost, char *err,
                              size_t errlen);
/* {"jobs": [...], "nextPaginationToken": "..."}; a missing, null or empty
 * token means the last page (next_token NULL). */
uni1_status uni1_parse_job_list(const char *buf, size_t len, uni1_job_list *out, char *err,
                                size_t errlen);
/* {"asset": {...}} or a bare asset object. */
uni1_status uni1_parse_asset(const char *buf, size_t len, uni1_asset *out, char *err,
                             size_t errlen);
/* The dry-run quote: {"creativeUnitsCost": n, ...}. */
uni1_status uni1_parse_estimate(const char *buf, size_t len, double *cost, char *err,
                                size_t errlen);
/* Fills message (from reason, message, error, detail, in that order; detail
 * may be any JSON, serialised), trace_id (traceId / trace_id) and retry_after
 * (remainingSeconds) of out. Never fails: a body that is not JSON becomes the
 * message (printable ASCII only, truncated). Leaves status, http_status and
 * body alone. */
void uni1_parse_error_body(const char *buf, size_t len, uni1_error *out);

/* ------------------------------------------------------------------------ */
/* Operations (network)                                                     */
/* ------------------------------------------------------------------------ */

/* POST /generate/custom/model_luma-uni-1-max. Validates first: an invalid
 * request sends nothing. *cost is -1 when the answer gives none.
 *
 * Exactly once. A generate request has no idempotency key: a POST that
 * reached the server is a paid job. It is re-sent without a look only when it
 * certainly created nothing (the connection failed before the request went
 * out, or HTTP 408/429). Any other failure after the request was sent (a 5xx,
 * a reset or dropped connection, a timeout) is uncertain: a backend goes on
 * with a request its gateway or its client gave up on, and its job may show
 * up in the job list seconds later. So the client looks at the list (GET
 * /jobs, newest first) again and again for settle_window seconds from the
 * failure (pauses of 0.25 s growing to 2 s), and adopts the first job that
 *   - holds every field of this request in metadata.input,
 *   - was created after the request was sent (allowing 120 s of clock skew),
 *   - is not claimed by any client of this process (a job a client created,
 *     adopted or re-attached to is claimed, process-wide), nor in exclude;
 * and a look only counts while no identical request of this process (any
 * client on the same server and project) is waiting for its answer: such a
 * twin's job would match too. A look waits for those answers first, at most
 * request_timeout seconds.
 * Only when a look that started after the whole window still shows no such
 * job is the request sent again (with resend_uncertain; then within
 * max_retries) or UNI1_ERR_UNCERTAIN returned (without). UNI1_ERR_UNCERTAIN,
 * with sent_at set, is also the answer when the list cannot be read, when a
 * twin never got its answer, or when the deadline or the interrupt callback
 * cut the window short: the request is never re-sent then. An adopted job
 * comes back with *cost -1. */
uni1_status uni1_generate(uni1_session *s, const uni1_generate_params *p, uni1_job *out,
                          double *cost);
/* uni1_generate, where the reconciliation also never adopts the jobs whose
 * ids are in exclude[0..n_exclude) (a caller's own record of jobs it holds,
 * e.g. a journal written by an earlier process). exclude may be NULL when
 * n_exclude is 0; the strings are borrowed for the call. */
uni1_status uni1_generate_excluding(uni1_session *s, const uni1_generate_params *p,
                                    const char *const *exclude, size_t n_exclude, uni1_job *out,
                                    double *cost);
/* Looks for the job that the generate request p, sent at sent_at (Unix time,
 * seconds), may have created: the reconciliation uni1_generate does after an
 * uncertain attempt, for callers that lost track of a submission (a process
 * that died between sending and recording the answer). Jobs whose ids are in
 * exclude, or that any client of this process claimed, are never picked, and
 * the look waits for identical requests in flight, as uni1_generate's does
 * (one look, no settle window: the caller decides how long to look).
 * UNI1_OK with *found 1 and *out filled (and claimed), or *found 0 when the
 * recent job list certainly holds no such job; an error when the list cannot
 * be read (UNI1_ERR_UNCERTAIN when a twin never got its answer). */
uni1_status uni1_find_submitted_job(uni1_session *s, const uni1_generate_params *p, double sent_at,
                                    const char *const *exclude, size_t n_exclude, uni1_job *out,
                                    int *found);
/* The same with ?dryRun=true: a quote (HTTP 269), no job. */
uni1_status uni1_estimate(uni1_session *s, const uni1_generate_params *p, double *cost);
/* GET /jobs/{id}. */
uni1_status uni1_get_job(uni1_session *s, const char *job_id, uni1_job *out);

typedef struct uni1_list_query {
    int page_size; /* 0: server default */
    const char *pagination_token;
    const char *status; /* filter or NULL */
    const char *type;   /* filter or NULL */
} uni1_list_query;
/* GET /jobs. */
uni1_status uni1_list_jobs(uni1_session *s, const uni1_list_query *q, uni1_job_list *out);
/* POST /jobs/{id}/action {"action":"cancel"}; the server refuses custom jobs
 * with 400, reported as UNI1_ERR_HTTP. */
uni1_status uni1_cancel_job(uni1_session *s, const char *job_id);

/* Called after every poll; return non-zero to stop waiting (the wait then
 * returns UNI1_ERR_INTERRUPTED). */
typedef int (*uni1_progress_fn)(void *userdata, const uni1_job *job);

/* Polls job (which must hold at least the id) until a terminal state or the
 * session deadline, updating it in place. The poll interval adapts to the
 * job's progress rate (see uni1_next_poll_delay). Returns UNI1_OK on success,
 * UNI1_ERR_JOB_FAILED / UNI1_ERR_JOB_CANCELED on those terminal states (job
 * is filled), UNI1_ERR_TIMEOUT at the deadline. */
uni1_status uni1_wait_job(uni1_session *s, uni1_job *job, uni1_progress_fn progress,
                          void *userdata);

/* The polling schedule, pure so it can be tested: seconds to sleep before the
 * next poll, given the time since the wait started, the progress seen at
 * the last two polls and the time between them. */
typedef struct uni1_poll_state {
    double elapsed;       /* seconds since the job was submitted/attached */
    double progress;      /* latest progress, 0..1 */
    double prev_progress; /* progress at the poll before, or -1 */
    double since_prev;    /* seconds between those two polls */
    unsigned polls;       /* polls so far */
    /* "finalizing" (progress says nothing then): with predicted 1, when the
     * end is expected, in seconds from now (<= 0: due). The prediction comes
     * from the client's earlier jobs (uni1_wait_job learns, from their
     * statusHistory, how long finalizing lasts relative to what came before
     * it). A zeroed tail means no prediction. */
    int predicted;
    double finalize_left;
} uni1_poll_state;
double uni1_next_poll_delay(const uni1_poll_state *st);
/* Seconds from now (server clock: `now`) to the predicted end of a job's
 * "finalizing", which began at finalizing_ts after the job was created at
 * created_ts: it lasts ratio times what came before it. ratio < 0: nothing
 * learned yet, a prior that errs short. */
double uni1_finalize_left(double created_ts, double finalizing_ts, double ratio, double now);

/* GET /assets/{id}. */
uni1_status uni1_get_asset(uni1_session *s, const char *asset_id, uni1_asset *out);

/* POST /assets with {"image": "data:MIME;base64,...", "name": name}. For
 * images up to about 3.5 MB. */
uni1_status uni1_upload_image(uni1_session *s, const void *data, size_t len, const char *name,
                              const char *mime_type, uni1_asset *out);

/* Downloads a URL without credentials (redirects followed, also without
 * credentials), retrying transient failures. To memory: ... */
uni1_status uni1_download_to_buffer(uni1_session *s, const char *url, uni1_buffer *out,
                                    char *content_type, size_t ct_len);
/* The asset's data into memory; on a 403 (an expired signed URL) the asset
 * is fetched again (it is updated in place) and its new URL tried once. */
uni1_status uni1_download_asset_to_buffer(uni1_session *s, uni1_asset *asset, uni1_buffer *out,
                                          char *content_type, size_t ct_len);
/* ... or streamed to an open file descriptor, written from its current
 * offset. *written gets the byte count. */
uni1_status uni1_download_to_fd(uni1_session *s, const char *url, int fd, long long *written);

/* Fetches the asset, then streams it into dir/<name> atomically: a temporary
 * file in dir, fsync, rename. name must be a plain file name (no '/', not
 * "." or ".."). With overwrite 0 an existing file gives UNI1_ERR_EXISTS. On
 * failure no file (temporary or final) is left. path_out gets the final path
 * (may be NULL). */
uni1_status uni1_download_asset_to_dir(uni1_session *s, const uni1_asset *asset, const char *dir,
                                       const char *name, int overwrite, char *path_out,
                                       size_t path_len);

/* Several assets into dir at once: names[i] for assets[i], paths_out[i]
 * (each path_len bytes, or paths_out NULL) for the final paths. Every name
 * and the no-overwrite rule are checked before any transfer starts. The first
 * attempt of every asset runs in parallel on the session's multi handle (up
 * to 6 at a time); any that fails is then fetched on its own through
 * uni1_download_asset_to_dir (retries, Range resume, a fresh URL after a
 * 403). Files finished before a failure stay in place, complete; the failed
 * one leaves nothing behind. */
uni1_status uni1_download_assets_to_dir(uni1_session *s, const uni1_asset *assets, size_t n,
                                        const char *dir, const char *const *names, int overwrite,
                                        char *const *paths_out, size_t path_len);

/* ------------------------------------------------------------------------ */
/* Large uploads: the multipart /uploads flow (upload.c)                    */
/* ------------------------------------------------------------------------ */

/* Files larger than what POST /assets takes inline go through POST /uploads:
 * the server hands out one presigned PUT URL per part, the client PUTs the
 * parts (to another host, never with credentials), asks the server to
 * complete the upload, and polls it through validation until it becomes an
 * asset. uni1_upload_file does all of it; the parser and the part plan are
 * public so they can be tested and fuzzed alone. */

#define UNI1_UPLOAD_PART_SIZE (8LL << 20)     /* the size of every part but the last */
#define UNI1_UPLOAD_MIN_PART_SIZE (5LL << 20) /* the server's minimum (all but the last) */
#define UNI1_UPLOAD_MAX_PART_SIZE (5LL << 30) /* the server's maximum */
#define UNI1_UPLOAD_MAX_PARTS 10000
/* How long uni1_upload_file polls a completed upload when the session has no
 * deadline, in seconds. */
#define UNI1_UPLOAD_WAIT_MAX 900.0

typedef enum uni1_upload_state {
    UNI1_UPLOAD_UNKNOWN = 0, /* a status string we do not know: non-terminal */
    UNI1_UPLOAD_PENDING,     /* waiting for its parts */
    UNI1_UPLOAD_VALIDATING,
    UNI1_UPLOAD_VALIDATED,
    UNI1_UPLOAD_IMPORTED, /* done: entity_id names the new asset */
    UNI1_UPLOAD_FAILED    /* also "failure" and "error"; see error_message */
} uni1_upload_state;

/* Maps a server status string (case-sensitive, synonyms included). */
uni1_upload_state uni1_upload_state_from_string(const char *s);
/* "pending", ..., "imported", "failed"; "unknown" for UNI1_UPLOAD_UNKNOWN. */
const char *uni1_upload_state_name(uni1_upload_state st);

typedef struct uni1_upload_part {
    int number;       /* 1..UNI1_UPLOAD_MAX_PARTS */
    char *url;        /* presigned PUT URL: http(s), printable ASCII;
                         a secret of its own, never logged */
    char expires[40]; /* as sent (ISO 8601), "" when absent */
} uni1_upload_part;

typedef struct uni1_upload {
    char id[UNI1_ID_MAX]; /* from "id", or "uploadId" */
    uni1_upload_state state;
    char status[32];         /* canonical name, or the server's own string
                                (truncated) when state is UNKNOWN */
    uni1_upload_part *parts; /* sorted by number, numbers unique; NULL when
                                n_parts is 0 (a completed upload lists none) */
    size_t n_parts;
    char entity_id[UNI1_ID_MAX]; /* the asset id once imported, else "" */
    char *error_message;         /* why it failed (errorMessage, or error,
                                    failureReason, reason), or NULL */
    char *raw_json;              /* the upload object re-serialised (unformatted),
                                    unknown fields kept */
    size_t raw_len;
} uni1_upload;
void uni1_upload_clear(uni1_upload *u);

/* {"upload": {...}} or a bare upload object, from POST /uploads, GET
 * /uploads/{id} and the complete action. Follows the rules of the other
 * parsers (see above): the id, the status, the parts and entityId are checked
 * strictly (ids as in URL paths, part URLs http(s) and printable ASCII, part
 * numbers whole numbers in 1..UNI1_UPLOAD_MAX_PARTS without duplicates);
 * expires and unknown fields never make it fail. */
uni1_status uni1_parse_upload(const char *buf, size_t len, uni1_upload *out, char *err,
                              size_t errlen);

/* How a file of `size` bytes is cut: returns the number of parts and sets
 * *part_size (the size of every part but the last, which holds the rest).
 * Parts are UNI1_UPLOAD_PART_SIZE, larger only when a file would need more
 * than UNI1_UPLOAD_MAX_PARTS of them. 0 when size is not positive or too
 * large for the flow (*part_size then 0). */
int uni1_upload_plan(long long size, long long *part_size);

/* Uploads `size` bytes of the open file descriptor fd (read with pread from
 * offset 0; the file offset is not used or moved) as an image asset, and
 * fills *out with the asset (GET /assets/{id}; clear it with
 * uni1_asset_clear). name becomes the asset's file name (1..255 bytes of
 * UTF-8, no control characters); mime_type must be "image/...". fd stays
 * open: the caller closes it.
 *
 *   1. POST /uploads {fileName, contentType, kind: "image", parts, fileSize}
 *      with the plan of uni1_upload_plan (retried like a read: an upload the
 *      server made and we never heard of costs nothing);
 *   2. each part PUT to its presigned URL on the session's CDN handle: no
 *      Authorization header, no redirect followed, each part retried on
 *      connection failures, timeouts, 408, 429 and 5xx with the session's
 *      backoff, up to max_retries times;
 *   3. POST /uploads/{id}/action {"action": "complete"}; when that fails in a
 *      way that leaves unknown whether the server saw it, GET /uploads/{id}
 *      tells, and the action is only sent again if the upload is still
 *      pending;
 *   4. GET /uploads/{id} until "imported" (the asset id is entityId), with
 *      interruptible sleeps of 0.2 s growing to 2 s, bounded by the session
 *      deadline, or UNI1_UPLOAD_WAIT_MAX seconds without one (then
 *      UNI1_ERR_TIMEOUT);
 *   5. GET /assets/{entityId}.
 *
 * Errors: UNI1_ERR_INVALID (bad arguments, nothing sent); UNI1_ERR_IO (fd
 * cannot be read, or holds fewer than size bytes); UNI1_ERR_HTTP with
 * http_status 0 when the server ends the upload "failed" (the message holds
 * its errorMessage, the body the upload object); UNI1_ERR_HTTP with the real
 * status when a request or part is refused (a part's message names the part
 * and the URL without its query string); UNI1_ERR_PROTOCOL when the server's
 * answers do not fit the flow; transport statuses, UNI1_ERR_INTERRUPTED and
 * UNI1_ERR_TIMEOUT as everywhere. Memory: one part (8 MiB) at a time. */
uni1_status uni1_upload_file(uni1_session *s, int fd, long long size, const char *name,
                             const char *mime_type, uni1_asset *out);

#ifdef __cplusplus
}
#endif

/* The engine and generations: many operations in flight at once. */
#include "uni1_engine.h"

#endif /* UNI1_H */
