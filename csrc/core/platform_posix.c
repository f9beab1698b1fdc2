/* The POSIX half of platform.h (Linux, macOS, the BSDs). */
#ifndef _WIN32
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- files ---------------------------------------------------------------- */

int uni1__dir_open(uni1_dir *d, const char *path)
{
    d->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return d->fd < 0 ? -1 : 0;
}

void uni1__dir_close(uni1_dir *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
}

int uni1__dir_has(const uni1_dir *d, const char *name)
{
    return faccessat(d->fd, name, F_OK, 0) == 0;
}

int uni1__dir_create(const uni1_dir *d, const char *name)
{
    return openat(d->fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

int uni1__dir_publish(const uni1_dir *d, const char *tmp, const char *name, int overwrite)
{
    int dfd = d->fd;
    if (overwrite)
        return renameat(dfd, tmp, dfd, name);
#ifdef RENAME_NOREPLACE
    if (renameat2(dfd, tmp, dfd, name, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
#endif
    /* Filesystems without RENAME_NOREPLACE: link() fails if name exists. */
    if (linkat(dfd, tmp, dfd, name, 0) != 0)
        return -1;
    unlinkat(dfd, tmp, 0);
    return 0;
}

void uni1__dir_unlink(const uni1_dir *d, const char *name)
{
    unlinkat(d->fd, name, 0);
}

void uni1__dir_sync(const uni1_dir *d)
{
    fsync(d->fd);
}

/* The process umask, read without changing it (umask(2) can only be read by
 * setting it, which races with other threads creating files). */
static mode_t process_umask(void)
{
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return mask;
    char line[128];
    while (fgets(line, sizeof line, f)) {
        unsigned int m;
        if (sscanf(line, "Umask: %o", &m) == 1) {
            mask = (mode_t)m;
            break;
        }
    }
    fclose(f);
    return mask;
}

int uni1__file_set_public(int fd)
{
    return fchmod(fd, 0666 & ~process_umask());
}

int uni1__file_sync(int fd)
{
    return fsync(fd);
}

ssize_t uni1__pread(int fd, void *buf, size_t len, long long offset)
{
    return pread(fd, buf, len, (off_t)offset);
}

int uni1__open_read(const char *path)
{
    return open(path, O_RDONLY | O_CLOEXEC);
}

FILE *uni1__tmpfile(void)
{
    return tmpfile();
}

void uni1__random_bytes(unsigned char *out, size_t n, unsigned salt)
{
    if (getentropy(out, n) == 0)
        return;
    unsigned long x = (unsigned long)getpid() * 2654435761u ^ (unsigned long)salt;
    for (size_t i = 0; i < n; i++, x >>= 5)
        out[i] = (unsigned char)x;
}

/* ---- sockets and the engine's wakeup --------------------------------------- */

curl_socket_t uni1__socket_open(int family, int type, int protocol)
{
    return socket(family, type | SOCK_CLOEXEC, protocol);
}

int uni1__socket_close(curl_socket_t s)
{
    return close(s);
}

int uni1__wakeup_open(int fds[2])
{
    return pipe2(fds, O_CLOEXEC | O_NONBLOCK);
}

void uni1__wakeup_signal(int fd)
{
    char one = 1;
    ssize_t w;
    do
        w = write(fd, &one, 1);
    while (w < 0 && errno == EINTR);
}

void uni1__wakeup_drain(int fd)
{
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0)
        ;
}

void uni1__wakeup_close(int fds[2])
{
    close(fds[0]);
    close(fds[1]);
}

/* ---- threads ------------------------------------------------------------- */

void uni1__block_signals(void)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
}

int uni1__cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int r = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return r;
}

int uni1__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, const struct timespec *at)
{
    return pthread_cond_timedwait(cv, mu, at);
}

#endif
