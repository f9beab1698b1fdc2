/* Private to the core: the process-wide ledger of generate submissions
 * (ledger.c). Which jobs are taken, and which generate requests are waiting
 * for their answer, for every client of the process at once: two clients on
 * one account see the same job list, so a job one of them holds must never
 * be adopted by the other. Nothing here is part of the public API. */
#ifndef UNI1_LEDGER_H
#define UNI1_LEDGER_H

#include <stdint.h>

/* FNV-1a of the NUL-terminated s, continuing from h (start with
 * UNI1_LEDGER_SEED). Keys, not secrets: never fed a credential. */
#define UNI1_LEDGER_SEED 1469598103934665603ull
uint64_t uni1__ledger_hash(uint64_t h, const char *s);

/* How many claimed ids the ledger remembers (the oldest are forgotten
 * first). Far more than the jobs a reconciliation pages through. */
#define UNI1_LEDGER_CLAIMS 16384

/* Claims, keyed by server (a hash of the base URL) and job id: a job this
 * process created, adopted or re-attached to. 1 when the id was free and is
 * now claimed, 0 when it was claimed already, -1 when out of memory (the
 * claim could not be recorded: treat the job as not yours). */
int uni1__ledger_claim(uint64_t server, const char *job_id);
int uni1__ledger_is_claimed(uint64_t server, const char *job_id);

/* Identical generate requests (same server, project and body: `request` is a
 * hash of the three) on their way, in every client of the process. */
void uni1__ledger_send_begin(uint64_t request);
void uni1__ledger_send_end(uint64_t request);

/* A look at the job list on behalf of `request` is only evidence when no
 * identical request was waiting for its answer at any moment of it: such a
 * twin's job may be in the list, unclaimed yet. watch_begin returns 0 (and
 * registers nothing) while a twin is on its way; otherwise 1, with *ticket
 * set. watch_end returns 1 when no twin went out since watch_begin. Every
 * successful watch_begin needs its watch_end. */
int uni1__ledger_watch_begin(uint64_t request, uint64_t *ticket);
int uni1__ledger_watch_end(uint64_t request, uint64_t ticket);

/* For tests: forget every claim and in-flight record. */
void uni1__ledger_reset(void);

#endif
