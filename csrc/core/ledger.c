/* The process-wide ledger of generate submissions: claimed job ids and
 * in-flight identical requests, shared by every client of the process
 * behind one mutex of its own (see ledger.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"
#include "uni1_internal.h"

#define LEDGER_BUCKETS 4096 /* a power of two */

/* The id is kept inline: the ring is one allocation, made once, so the
 * heap does not grow with every job a long-running process submits. */
typedef struct claim {
    uint64_t server, hash;
    int next; /* next index in the bucket's chain, -1 at its end */
    char id[UNI1_ID_MAX];
} claim;

typedef struct twin {
    uint64_t request;
    unsigned sending;  /* requests waiting for their answer */
    unsigned watchers; /* looks at the job list in progress */
    uint64_t begun;    /* requests that went out while this record lived */
} twin;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
#if UNI1_HAVE_FORK
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
#endif

/* The newest UNI1_LEDGER_CLAIMS claims as a ring (the oldest is forgotten
 * first), indexed by a chained hash table. Allocated on first use. */
static claim *claims;
static int buckets[LEDGER_BUCKETS];
static size_t n_claims, next_claim;

static twin *twins;
static size_t n_twins, cap_twins;

#if UNI1_HAVE_FORK
/* A fork taken while another thread held the lock would leave it held in
 * the child forever. The parent's threads do not exist in the child, so
 * their in-flight requests and looks are dropped there; claims stay (the
 * child inherited the jobs they stand for). */
static void before_fork(void)
{
    pthread_mutex_lock(&lock);
}
static void after_fork_parent(void)
{
    pthread_mutex_unlock(&lock);
}
static void after_fork_child(void)
{
    n_twins = 0;
    pthread_mutex_unlock(&lock);
}
static void register_fork_handlers(void)
{
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}
#endif

static void enter(void)
{
#if UNI1_HAVE_FORK
    pthread_once(&fork_once, register_fork_handlers);
#endif
    pthread_mutex_lock(&lock);
}

uint64_t uni1__ledger_hash(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static uint64_t claim_hash(uint64_t server, const char *id)
{
    /* Mix the server key in byte by byte, then the id. */
    uint64_t h = UNI1_LEDGER_SEED;
    for (int i = 0; i < 8; i++)
        h = (h ^ ((server >> (8 * i)) & 0xff)) * 1099511628211ull;
    return uni1__ledger_hash(h, id);
}

static int find_locked(uint64_t server, uint64_t hash, const char *id)
{
    if (!claims)
        return -1;
    for (int i = buckets[hash & (LEDGER_BUCKETS - 1)]; i >= 0; i = claims[i].next)
        if (claims[i].hash == hash && claims[i].server == server && strcmp(claims[i].id, id) == 0)
            return i;
    return -1;
}

static void unlink_locked(int victim)
{
    int *link = &buckets[claims[victim].hash & (LEDGER_BUCKETS - 1)];
    while (*link != victim)
        link = &claims[*link].next;
    *link = claims[victim].next;
    claims[victim].id[0] = '\0';
}

int uni1__ledger_claim(uint64_t server, const char *job_id)
{
    if (!job_id || strlen(job_id) >= UNI1_ID_MAX)
        return -1; /* never an id the core accepts; not recordable */
    uint64_t hash = claim_hash(server, job_id);
    int result = -1;
    enter();
    if (!claims) {
        claims = calloc(UNI1_LEDGER_CLAIMS, sizeof *claims);
        for (size_t b = 0; claims && b < LEDGER_BUCKETS; b++)
            buckets[b] = -1;
    }
    if (claims && find_locked(server, hash, job_id) >= 0) {
        result = 0;
    } else if (claims) {
        int slot = (int)next_claim;
        if (n_claims == UNI1_LEDGER_CLAIMS)
            unlink_locked(slot);
        else
            n_claims++;
        next_claim = (next_claim + 1) % UNI1_LEDGER_CLAIMS;
        size_t b = hash & (LEDGER_BUCKETS - 1);
        claims[slot].server = server;
        claims[slot].hash = hash;
        claims[slot].next = buckets[b];
        memcpy(claims[slot].id, job_id, strlen(job_id) + 1);
        buckets[b] = slot;
        result = 1;
    }
    pthread_mutex_unlock(&lock);
    return result;
}

int uni1__ledger_is_claimed(uint64_t server, const char *job_id)
{
    uint64_t hash = claim_hash(server, job_id);
    enter();
    int found = find_locked(server, hash, job_id) >= 0;
    pthread_mutex_unlock(&lock);
    return found;
}

/* The record of request, created when `create` (NULL when out of memory). */
static twin *twin_locked(uint64_t request, int create)
{
    for (size_t i = 0; i < n_twins; i++)
        if (twins[i].request == request)
            return &twins[i];
    if (!create)
        return NULL;
    if (n_twins == cap_twins) {
        size_t cap = cap_twins ? 2 * cap_twins : 8;
        twin *p = realloc(twins, cap * sizeof *p);
        if (!p)
            return NULL;
        twins = p;
        cap_twins = cap;
    }
    twins[n_twins] = (twin){request, 0, 0, 0};
    return &twins[n_twins++];
}

static void drop_if_idle_locked(twin *t)
{
    if (t->sending == 0 && t->watchers == 0)
        *t = twins[--n_twins];
}

void uni1__ledger_send_begin(uint64_t request)
{
    enter();
    /* Without a record (out of memory) a look may not wait for this request:
     * the claims are still atomic, so the worst case is a look that sees
     * this request's job and leaves it to the claim of its answer. */
    twin *t = twin_locked(request, 1);
    if (t) {
        t->sending++;
        t->begun++;
    }
    pthread_mutex_unlock(&lock);
}

void uni1__ledger_send_end(uint64_t request)
{
    enter();
    twin *t = twin_locked(request, 0);
    if (t && t->sending > 0) {
        t->sending--;
        drop_if_idle_locked(t);
    }
    pthread_mutex_unlock(&lock);
}

int uni1__ledger_watch_begin(uint64_t request, uint64_t *ticket)
{
    int ok = 0;
    enter();
    twin *t = twin_locked(request, 1);
    if (t && t->sending == 0) {
        t->watchers++;
        *ticket = t->begun;
        ok = 1;
    } else if (!t) {
        *ticket = UINT64_MAX; /* no record: watch_end cannot vouch for the look */
        ok = 1;
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

int uni1__ledger_watch_end(uint64_t request, uint64_t ticket)
{
    int quiet = 0;
    enter();
    twin *t = twin_locked(request, 0);
    if (t && ticket != UINT64_MAX) {
        quiet = t->begun == ticket;
        if (t->watchers > 0)
            t->watchers--;
        drop_if_idle_locked(t);
    }
    pthread_mutex_unlock(&lock);
    return quiet;
}

void uni1__ledger_reset(void)
{
    enter();
    free(claims);
    claims = NULL;
    n_claims = next_claim = 0;
    free(twins);
    twins = NULL;
    n_twins = cap_twins = 0;
    pthread_mutex_unlock(&lock);
}
