/* What the C tests share: wall-time bounds that hold under valgrind and on a
 * loaded machine too (a test never fails because the machine was slow), the
 * process's thread count, and a client for 127.0.0.1. */
#ifndef UNI1_ENGINE_TEST_H
#define UNI1_ENGINE_TEST_H

#include <dirent.h>
#include <stdio.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#include "uni1.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNI1_TEST_SLACK 3.0
#else
#define UNI1_TEST_SLACK 2.0
#endif

/* Wall-time bounds: twice the expected time natively (CI shares 2 cores),
 * looser with the sanitizers and under valgrind (every instruction there is
 * ~50 times slower, the waits are not). */
static inline double slack(void)
{
    return RUNNING_ON_VALGRIND ? 8.0 : UNI1_TEST_SLACK;
}

/* Threads of this process; -1 when /proc cannot tell. */
static inline int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* A client whose API requests go to transport (NULL: libcurl, unused by
 * tasks that only sleep); NULL when it cannot be made. */
static inline uni1_client *new_client(uni1_transport_fn transport, void *ud)
{
    uni1_options o;
    uni1_options_init(&o);
    o.api_key = "key-AAAA";
    o.api_secret = "secret-BBBB";
    o.base_url = "http://127.0.0.1:9";
    o.transport = transport;
    o.transport_userdata = ud;
    o.backoff_base = 0.001;
    o.backoff_max = 0.004;
    o.settle_window = 0;
    char err[256];
    return uni1_client_new(&o, err, sizeof err);
}

static inline int init_library(void)
{
    char err[256];
    if (uni1_global_init(err, sizeof err) != UNI1_OK) {
        fprintf(stderr, "uni1_global_init: %s\n", err);
        return -1;
    }
    return 0;
}

#endif
