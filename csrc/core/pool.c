/* The session pool of a client: reuse, trimming, and what keeps it sane
 * across fork().
 *
 * Fork. A forked child inherits every pooled session and, with it, the
 * parent's keep-alive sockets (and TLS state). Were the child to use them,
 * parent and child would read each other's answers off one connection. So:
 *  - every socket libcurl opens for a client goes through track_open() and is
 *    listed on the client (under its lock, atomically with socket()/close(),
 *    so no fork can fall between a socket and its record);
 *  - pthread_atfork: prepare takes the registry lock and every client's lock
 *    (so the child never inherits a lock held by a thread that does not exist
 *    there, nor a pool caught half-updated); parent and child release them;
 *  - in the child, every listed socket is replaced, under its own fd number,
 *    by /dev/null (dup2). Nothing the child does later can reach the parent's
 *    connections: not a request, and not the TLS close_notify or HTTP/2 GOAWAY
 *    that libcurl writes when a handle is cleaned up. The parent's sockets
 *    stay open (the parent holds its own references), untouched. The fd
 *    numbers stay taken until libcurl closes them, so no later open() in the
 *    child can be mistaken for one of them;
 *  - the child's pooled sessions go to a graveyard, cleaned up at the next
 *    acquire (not in the fork handler: libcurl and OpenSSL are not
 *    async-signal-safe), which frees their memory and their /dev/null fds.
 *    A session that was out at the fork (its thread does not exist in the
 *    child) is leaked; one that does come back (the forking thread's own, when
 *    a signal handler forked) is cleaned up as well instead of pooled.
 *  - the client's generation counts forks; a session from another generation
 *    is never pooled again.
 * When no /dev/null nor a socket can be had in the child (no fd left), the
 * sockets are closed instead and the inherited sessions leaked on purpose:
 * cleaning them up then could write a close_notify to a reused fd number.
 *
 * The client lock is never held while calling libcurl or user code, so the
 * prepare handler cannot wait on a thread that waits for it (for instance
 * for Python's GIL, which the forking thread holds). */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "platform.h"
#include "session.h"
#if UNI1_HAVE_FORK
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static uni1_client *registry; /* every live client */

#if UNI1_HAVE_FORK
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    for (uni1_client *c = registry; c; c = c->reg_next) {
        pthread_mutex_lock(&c->lock);
        uni1__engine_atfork_prepare(c);
    }
    uni1__engine_global_atfork(0);
}

static void atfork_parent(void)
{
    uni1__engine_global_atfork(1);
    for (uni1_client *c = registry; c; c = c->reg_next) {
        uni1__engine_atfork_parent(c);
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

/* Runs in the child, single-threaded, with every lock held by this thread
 * (taken in atfork_prepare). Only async-signal-safe calls here. */
static void atfork_child(void)
{
    int sink = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (sink < 0)
        sink = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    for (uni1_client *c = registry; c; c = c->reg_next) {
        for (size_t i = 0; i < c->n_socks; i++) {
            if (sink >= 0)
                dup2(sink, c->socks[i]);
            else
                close(c->socks[i]);
        }
        c->n_socks = 0;
        c->generation++;
        c->leak_stale |= sink < 0; /* for good: a later grave may hold these */
        if (sink >= 0) {
            /* The pool joins the graveyard; older graves stay in it. */
            uni1_session **tail = &c->graveyard;
            while (*tail)
                tail = &(*tail)->next_free;
            *tail = c->free_sessions;
        }
        c->free_sessions = NULL;
        c->n_free = 0;
        uni1__engine_atfork_child(c);
        pthread_mutex_unlock(&c->lock);
    }
    if (sink >= 0)
        close(sink);
    uni1__engine_global_atfork(2);
    pthread_mutex_unlock(&registry_lock);
}

static void install_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}
#endif

void uni1__pool_register(uni1_client *c)
{
#if UNI1_HAVE_FORK
    pthread_once(&atfork_once, install_atfork);
#endif
    pthread_mutex_lock(&registry_lock);
    c->reg_prev = NULL;
    c->reg_next = registry;
    if (registry)
        registry->reg_prev = c;
    registry = c;
    pthread_mutex_unlock(&registry_lock);
}

/* ---- sockets ------------------------------------------------------------ */

static curl_socket_t track_open(void *userdata, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)purpose;
    uni1_client *c = userdata;
    curl_socket_t fd = CURL_SOCKET_BAD;
    pthread_mutex_lock(&c->lock);
    if (c->n_socks == c->cap_socks) {
        size_t cap = c->cap_socks ? 2 * c->cap_socks : 16;
        curl_socket_t *p = realloc(c->socks, cap * sizeof *p);
        if (!p)
            goto out; /* the connection fails: better than an untracked socket */
        c->socks = p;
        c->cap_socks = cap;
    }
    /* Close-on-exec as well: a subprocess has no business with them. */
    fd = uni1__socket_open(a->family, a->socktype, a->protocol);
    if (fd != CURL_SOCKET_BAD)
        c->socks[c->n_socks++] = fd;
out:
    pthread_mutex_unlock(&c->lock);
    return fd;
}

static int track_close(void *userdata, curl_socket_t fd)
{
    uni1_client *c = userdata;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n_socks; i++) {
        if (c->socks[i] == fd) {
            c->socks[i] = c->socks[--c->n_socks];
            break;
        }
    }
    int rc = uni1__socket_close(fd);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void uni1__track_sockets(uni1_client *c, CURL *e)
{
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, track_open);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, c);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, track_close);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, c);
}

/* ---- sessions ----------------------------------------------------------- */

CURLM *uni1__session_multi(uni1_session *s)
{
    if (!s->multi) {
        s->multi = curl_multi_init();
        /* Keep a few connections per origin alive between requests. */
        if (s->multi)
            curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, 8L);
    }
    return s->multi;
}

CURL *uni1__session_easy(uni1_session *s, int cdn)
{
    CURL **e = cdn ? &s->cdn : &s->api;
    if (!*e) {
        if (s->task && !s->holds_slot) {
            uni1__engine_slot_acquire(s->task);
            s->holds_slot = 1;
        }
        *e = curl_easy_init();
    }
    return *e;
}

void uni1__session_idle(uni1_session *s)
{
    /* In the engine a connection belongs to the multi handle's cache, not to
     * the easy handle that used it: dropping the handles keeps it. */
    if (s->api)
        curl_easy_cleanup(s->api);
    if (s->cdn)
        curl_easy_cleanup(s->cdn);
    s->api = s->cdn = NULL;
    if (s->task && s->holds_slot)
        uni1__engine_slot_release(s->task);
    s->holds_slot = 0;
}

/* Never called with the client lock held: cleaning up closes sockets, which
 * takes it (track_close). */
static void session_destroy(uni1_session *s)
{
    if (s->api)
        curl_easy_cleanup(s->api);
    if (s->cdn)
        curl_easy_cleanup(s->cdn);
    if (s->multi)
        curl_multi_cleanup(s->multi);
    free(s->err.body);
    free(s);
}

static void destroy_list(uni1_session *s)
{
    while (s) {
        uni1_session *next = s->next_free;
        session_destroy(s);
        s = next;
    }
}

void uni1__pool_free(uni1_client *c)
{
    pthread_mutex_lock(&registry_lock);
    if (c->reg_prev)
        c->reg_prev->reg_next = c->reg_next;
    else
        registry = c->reg_next;
    if (c->reg_next)
        c->reg_next->reg_prev = c->reg_prev;
    pthread_mutex_unlock(&registry_lock);
    destroy_list(c->free_sessions);
    c->free_sessions = NULL;
    if (!c->leak_stale)
        destroy_list(c->graveyard);
    c->graveyard = NULL;
    free(c->socks);
    c->socks = NULL;
    c->n_socks = c->cap_socks = 0;
}

uni1_session *uni1_session_acquire(uni1_client *c)
{
    uni1_session *s, *graves;
    unsigned generation;
    pthread_mutex_lock(&c->lock);
    graves = c->graveyard;
    c->graveyard = NULL;
    s = c->free_sessions;
    if (s) {
        c->free_sessions = s->next_free;
        c->n_free--;
    }
    c->sessions_out++;
    generation = c->generation;
    pthread_mutex_unlock(&c->lock);
    destroy_list(graves);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (s) {
            s->client = c;
            s->generation = generation;
            /* The handles come at first use (uni1__session_*): a session
             * lent to an engine task never needs a multi handle of its own,
             * and one waiting for a job needs no easy handle. */
            s->rng = (unsigned)(uni1_monotonic() * 1e6) ^ (unsigned)(uintptr_t)s;
        }
        if (!s) {
            pthread_mutex_lock(&c->lock);
            c->sessions_out--;
            pthread_mutex_unlock(&c->lock);
            return NULL;
        }
    }
    s->next_free = NULL;
    s->interrupt = NULL;
    s->interrupt_userdata = NULL;
    s->deadline = 0;
    uni1__reset_error(s);
    return s;
}

void uni1_session_release(uni1_session *s)
{
    if (!s)
        return;
    uni1_client *c = s->client;
    uni1__reset_error(s);
    s->interrupt = NULL;
    s->interrupt_userdata = NULL;
    uni1_session *trim = NULL;
    pthread_mutex_lock(&c->lock);
    c->sessions_out--;
    if (s->generation != c->generation) {
        /* Out at a fork, back in the child: its sockets are /dev/null now. */
        if (!c->leak_stale) {
            s->next_free = c->graveyard;
            c->graveyard = s;
        }
    } else if (c->n_free < UNI1_IDLE_SESSIONS) {
        s->next_free = c->free_sessions;
        c->free_sessions = s;
        c->n_free++;
    } else {
        /* After a burst of concurrent calls the pool shrinks back: each idle
         * session holds a multi handle (with its wakeup pair) and up to
         * CURLMOPT_MAXCONNECTS connections. */
        trim = s;
    }
    pthread_mutex_unlock(&c->lock);
    if (trim)
        session_destroy(trim);
}
