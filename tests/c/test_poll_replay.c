/* The poll schedule (uni1_next_poll_delay) replayed against the emulator's
 * job model on a simulated clock: what bench P8 measures (GET /jobs per job
 * and the delay from the server's success to the wait's return), counted
 * exactly, so the figures cannot flake on a slow machine.
 *
 * The model (scenario_uni1/emulator/state.py): a job of length d is queued
 * until 0.1 d, warming-up until 0.2 d, in-progress until 0.85 d with
 * progress moving in 12 seeded uneven steps (some flat) up to 0.97,
 * finalizing (progress 0.99) until d, then success. The replay runs the
 * wait's loop (ops.c uni1_wait_job) step by step: the same poll state, the
 * same prediction of finalizing's end (uni1_finalize_left). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "uni1.h"

#define TICKS 12

typedef struct sim_job {
    double d;
    double tick_at[TICKS], tick_value[TICKS];
} sim_job;

static uint64_t rng_state;

static double rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* The emulator's _ticks, with this file's generator. */
static void sim_job_init(sim_job *j, double d, unsigned seed)
{
    rng_state = 0x5EED ^ ((uint64_t)seed * 0x9E3779B97F4A7C15ULL);
    double gaps[TICKS], weights[TICKS], gsum = 0, wsum = 0;
    for (int i = 0; i < TICKS; i++)
        gaps[i] = rnd() + 0.15;
    for (int i = 0; i < TICKS; i++) {
        double r = rnd();
        weights[i] = r < 0.2 ? 0.0 : pow(rnd(), 2) + 0.02;
    }
    if (weights[TICKS - 1] < 0.05)
        weights[TICKS - 1] = 0.05;
    for (int i = 0; i < TICKS; i++) {
        gsum += gaps[i];
        wsum += weights[i];
    }
    j->d = d;
    double off = 0.2 * d, acc = 0;
    for (int i = 0; i < TICKS; i++) {
        off += 0.64 * d * gaps[i] / gsum;
        acc += weights[i];
        j->tick_at[i] = off;
        j->tick_value[i] = round(0.97 * acc / wsum * 1000) / 1000;
    }
}

typedef enum { QUEUED, WARMING, RUNNING, FINALIZING, DONE } sim_status;

static sim_status sim_state(const sim_job *j, double t, double *progress)
{
    if (t >= j->d) {
        *progress = 1.0;
        return DONE;
    }
    if (t >= 0.85 * j->d) {
        *progress = 0.99;
        return FINALIZING;
    }
    *progress = 0;
    if (t < 0.2 * j->d)
        return t < 0.1 * j->d ? QUEUED : WARMING;
    for (int i = 0; i < TICKS && j->tick_at[i] <= t; i++)
        *progress = j->tick_value[i];
    return RUNNING;
}

typedef struct replay {
    double gets, delay, worst_delay;
    int jobs;
} replay;

/* One wait, as uni1_wait_job runs it: the job created at 0 on the server's
 * clock (the same as ours here), the wait started lag seconds later (the
 * POST's answer: queued, progress 0), each GET answered after rtt seconds.
 * ratio: the finalizing ratio the client has learned (< 0: none). */
static void replay_one(replay *r, const sim_job *j, double lag, double rtt, double ratio)
{
    double t = lag, start = lag, prev_progress = -1, prev_time = start, progress = 0;
    sim_status status = QUEUED;
    unsigned polls = 0;
    for (;;) {
        uni1_poll_state ps = {t - start, progress, prev_progress, t - prev_time, polls, 0, 0};
        if (status == FINALIZING) {
            ps.predicted = 1;
            ps.finalize_left = uni1_finalize_left(0.0, 0.85 * j->d, ratio, t);
        }
        double delay = uni1_next_poll_delay(&ps);
        assert_true(delay >= 0.05 && delay <= 30.0);
        prev_progress = progress;
        prev_time = t;
        t += delay;
        status = sim_state(j, t, &progress); /* the server answers as of t */
        t += rtt;
        polls++;
        if (status == DONE)
            break;
    }
    double late = t - j->d;
    r->gets += polls;
    r->delay += late;
    if (late > r->worst_delay)
        r->worst_delay = late;
    r->jobs++;
}

static replay replay_many(double d, double ratio)
{
    replay r = {0, 0, 0, 0};
    for (unsigned seed = 0; seed < 200; seed++) {
        sim_job j;
        sim_job_init(&j, d, seed);
        replay_one(&r, &j, 0.003 + 0.002 * (seed % 5), 0.002, ratio);
    }
    r.gets /= r.jobs;
    r.delay /= r.jobs;
    printf("replay %3.0f s job, ratio %5.2f: %.2f GET /jobs, delay %.3f s mean, %.3f s worst\n", d,
           ratio, r.gets, r.delay, r.worst_delay);
    return r;
}

/* The emulator's finalizing lasts 0.15 d after 0.85 d. */
#define TRUE_RATIO (0.15 / 0.85)

static void test_p8_with_nothing_learned(void **state)
{
    (void)state;
    /* A client's first jobs: finalizing's length is the prior's guess. P8's
     * targets are at most 15 GETs and 0.6 s at 90 s, fewer than 8 GETs at
     * 20 s: the delay is met, the GET counts miss by about one GET at 90 s
     * and a third of one at 20 s (bench/RESULTS.md). What is asserted is
     * what the schedule reaches, with a little room (the schedule before
     * this replay existed: 25.9 and 15.7 GETs, 0.96 s). */
    replay r90 = replay_many(90, -1), r20 = replay_many(20, -1);
    assert_true(r90.gets <= 16.5);
    assert_true(r90.delay <= 0.5);
    assert_true(r20.gets <= 8.5);
}

static void test_p8_targets_once_learned(void **state)
{
    (void)state;
    /* Learned right: every target met. Learned 10% short of the truth: a
     * look or two more in finalizing. (Learned 10% long, the sleep
     * overshoots the end: 90 s jobs are then noticed ~1.4 s late.) */
    replay r90 = replay_many(90, TRUE_RATIO), r20 = replay_many(20, TRUE_RATIO);
    assert_true(r90.gets <= 15);
    assert_true(r90.delay <= 0.6);
    assert_true(r20.gets < 8);
    r90 = replay_many(90, TRUE_RATIO * 0.9);
    r20 = replay_many(20, TRUE_RATIO * 0.9);
    assert_true(r90.gets <= 15.5);
    assert_true(r90.delay <= 0.6);
    assert_true(r20.gets < 8);
}

static void test_short_jobs_noticed_soon(void **state)
{
    (void)state;
    /* P3's 2 s jobs: the whole run's wall time is jobs / concurrency times
     * (length + this delay), so it has to stay a small part of 2 s; and
     * their polls are most of P3's requests. */
    replay r2 = replay_many(2, -1);
    assert_true(r2.delay <= 0.2);
    assert_true(r2.gets <= 4);
    replay l2 = replay_many(2, TRUE_RATIO);
    assert_true(l2.delay <= 0.2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_p8_with_nothing_learned),
        cmocka_unit_test(test_p8_targets_once_learned),
        cmocka_unit_test(test_short_jobs_noticed_soon),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
