/* Private to the core: the few calls that differ between POSIX systems and
 * Windows (MinGW-w64 with winpthreads), so the rest of the core is written
 * once. One-liners are inline here; the rest is in platform_posix.c and
 * platform_win.c (each compiles to nothing on the other system). On POSIX
 * every function does exactly what the call it replaces did.
 *
 * Not covered on purpose: threads, mutexes, condition variables and
 * clock_gettime (winpthreads provides them), and fork(): Windows has none,
 * so the fork handlers are compiled only where UNI1_HAVE_FORK is 1. */
#ifndef UNI1_PLATFORM_H
#define UNI1_PLATFORM_H

#include <curl/curl.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>

#ifdef _WIN32
#define UNI1_HAVE_FORK 0
#ifndef NAME_MAX
#define NAME_MAX 255 /* a path component (NTFS, FAT) */
#endif
/* MinGW's C99 printf family (%zu, %lld); the core's format checks assume it. */
#if defined(__MINGW32__) && !__USE_MINGW_ANSI_STDIO
#error "build the core with -D__USE_MINGW_ANSI_STDIO=1"
#endif
#else
#define UNI1_HAVE_FORK 1
#endif

/* printf-style format checking for the core's own formatting helpers. */
#if defined(__MINGW32__)
#define UNI1_PRINTF(fmt, args) __attribute__((format(gnu_printf, fmt, args)))
#elif defined(__GNUC__)
#define UNI1_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define UNI1_PRINTF(fmt, args)
#endif

/* ---- inline one-liners ---------------------------------------------------- */

/* timegm: struct tm in UTC to seconds since the epoch. */
static inline time_t uni1__timegm(struct tm *tm)
{
#ifdef _WIN32
    return _mkgmtime(tm);
#else
    return timegm(tm);
#endif
}

/* A uniform draw in [0, 1] from the caller's seed (rand_r's sequence on
 * POSIX; Windows has no rand_r: xorshift32 there, seed 0 mapped to 1). */
static inline double uni1__rand01(unsigned int *seed)
{
#ifdef _WIN32
    unsigned int x = *seed ? *seed : 1u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *seed = x;
    return (double)x / (double)0xffffffffu;
#else
    return (double)rand_r(seed) / (double)RAND_MAX;
#endif
}

/* ---- files ----------------------------------------------------------------
 * Paths are UTF-8 (converted to UTF-16 on Windows). Functions returning int
 * give -1 with errno set on failure. */

/* A destination directory, opened once: every name below is relative to it,
 * so a directory renamed or replaced mid-transfer can neither strand a
 * temporary file nor receive a file in its place (POSIX: a descriptor and
 * the *at calls; Windows: a handle that forbids renaming or deleting the
 * directory while it is open, and the path). */
typedef struct uni1_dir {
    int fd;
#ifdef _WIN32
    void *handle;
    char *path;
#endif
} uni1_dir;

int uni1__dir_open(uni1_dir *d, const char *path);
void uni1__dir_close(uni1_dir *d);
/* 1 when name exists in d. */
int uni1__dir_has(const uni1_dir *d, const char *name);
/* Creates name in d for reading and writing, failing with EEXIST when it
 * exists (O_EXCL); owner-only, not inherited by child processes. A
 * descriptor for read()/write()/close(). */
int uni1__dir_create(const uni1_dir *d, const char *name);
/* Renames tmp to name within d; without overwrite, atomically fails with
 * EEXIST when name exists. */
int uni1__dir_publish(const uni1_dir *d, const char *tmp, const char *name, int overwrite);
void uni1__dir_unlink(const uni1_dir *d, const char *name);
/* Makes the renames in d durable. */
void uni1__dir_sync(const uni1_dir *d);

/* Gives a file made by uni1__dir_create the permissions any new file gets
 * (0666 less the umask on POSIX; Windows files inherit the directory's). */
int uni1__file_set_public(int fd);
/* fsync */
int uni1__file_sync(int fd);
/* pread: up to len bytes at offset (Windows: moves the file position). */
ssize_t uni1__pread(int fd, void *buf, size_t len, long long offset);
/* open(path, O_RDONLY | O_CLOEXEC) */
int uni1__open_read(const char *path);
/* tmpfile(): Windows's own puts it in the root of the drive, where a user
 * may not write; there it goes to the user's temporary directory. */
FILE *uni1__tmpfile(void);
/* n random bytes for file names; never fails (a weaker fallback mixes the
 * process id and salt). */
void uni1__random_bytes(unsigned char *out, size_t n, unsigned salt);

/* ---- sockets and the engine's wakeup --------------------------------------- */

/* A socket for libcurl, not inherited by child processes. */
curl_socket_t uni1__socket_open(int family, int type, int protocol);
int uni1__socket_close(curl_socket_t s);

/* A readable-when-signalled pair: fds[0] is what an event loop watches
 * (POSIX: a non-blocking pipe; Windows: a connected loopback socket pair,
 * since select() there takes sockets only; a SOCKET's value fits an int). */
int uni1__wakeup_open(int fds[2]);
void uni1__wakeup_signal(int fd);
void uni1__wakeup_drain(int fd);
void uni1__wakeup_close(int fds[2]);

/* ---- threads ------------------------------------------------------------- */

/* Signals stay with the calling application: the engine thread blocks them
 * all (Windows delivers none to threads). */
void uni1__block_signals(void);
/* A condition variable whose timed waits take CLOCK_MONOTONIC deadlines
 * (winpthreads ignores pthread_condattr_setclock: there the deadline is
 * turned into a relative wait). */
int uni1__cond_init_monotonic(pthread_cond_t *cv);
int uni1__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, const struct timespec *at);

#endif
