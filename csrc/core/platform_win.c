/* The Windows half of platform.h (MinGW-w64, winpthreads). Link with
 * ws2_32 (the wakeup socket pair). */
#ifdef _WIN32
#define _CRT_RAND_S /* rand_s in stdlib.h */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <string.h>
#include <sys/stat.h>

/* ---- errors and paths ------------------------------------------------------ */

static int errno_of(DWORD e)
{
    switch (e) {
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS:
        return EEXIST;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_NAME:
        return ENOENT;
    case ERROR_ACCESS_DENIED:
    case ERROR_SHARING_VIOLATION:
    case ERROR_LOCK_VIOLATION:
        return EACCES;
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL:
        return ENOSPC;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
        return ENOMEM;
    case ERROR_FILENAME_EXCED_RANGE:
        return ENAMETOOLONG;
    case ERROR_DIRECTORY:
        return ENOTDIR;
    default:
        return EIO;
    }
}

static int fail_win(void)
{
    errno = errno_of(GetLastError());
    return -1;
}

/* dir "\" name (name may be NULL) as a malloc'd UTF-16 string; NULL with
 * errno on invalid UTF-8 or no memory. */
static wchar_t *wide_path(const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = name ? strlen(name) : 0;
    char *utf8 = malloc(dl + nl + 2);
    if (!utf8) {
        errno = ENOMEM;
        return NULL;
    }
    memcpy(utf8, dir, dl);
    if (name) {
        utf8[dl] = '\\';
        memcpy(utf8 + dl + 1, name, nl + 1);
    } else {
        utf8[dl] = 0;
    }
    wchar_t *w = NULL;
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8, -1, NULL, 0);
    if (n > 0 && (w = malloc((size_t)n * sizeof *w)) != NULL &&
        MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8, -1, w, n) != n) {
        free(w);
        w = NULL;
    }
    if (!w)
        errno = n > 0 ? ENOMEM : EINVAL;
    free(utf8);
    return w;
}

/* ---- files ---------------------------------------------------------------- */

int uni1__dir_open(uni1_dir *d, const char *path)
{
    d->fd = -1;
    d->handle = INVALID_HANDLE_VALUE;
    d->path = NULL;
    wchar_t *w = wide_path(path, NULL);
    if (!w)
        return -1;
    /* No FILE_SHARE_DELETE: nobody renames or removes it while it is open. */
    HANDLE h = CreateFileW(w, FILE_LIST_DIRECTORY, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                           OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
    free(w);
    if (h == INVALID_HANDLE_VALUE)
        return fail_win();
    BY_HANDLE_FILE_INFORMATION info;
    if (!GetFileInformationByHandle(h, &info) ||
        !(info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)) {
        CloseHandle(h);
        errno = ENOTDIR;
        return -1;
    }
    d->path = malloc(strlen(path) + 1);
    if (!d->path) {
        CloseHandle(h);
        errno = ENOMEM;
        return -1;
    }
    strcpy(d->path, path);
    d->handle = h;
    d->fd = 0;
    return 0;
}

void uni1__dir_close(uni1_dir *d)
{
    if (d->fd >= 0) {
        CloseHandle(d->handle);
        free(d->path);
    }
    d->fd = -1;
    d->handle = INVALID_HANDLE_VALUE;
    d->path = NULL;
}

int uni1__dir_has(const uni1_dir *d, const char *name)
{
    wchar_t *w = wide_path(d->path, name);
    if (!w)
        return 0;
    DWORD a = GetFileAttributesW(w);
    free(w);
    return a != INVALID_FILE_ATTRIBUTES;
}

int uni1__dir_create(const uni1_dir *d, const char *name)
{
    wchar_t *w = wide_path(d->path, name);
    if (!w)
        return -1;
    int fd =
        _wopen(w, _O_RDWR | _O_CREAT | _O_EXCL | _O_BINARY | _O_NOINHERIT, _S_IREAD | _S_IWRITE);
    free(w);
    return fd;
}

int uni1__dir_publish(const uni1_dir *d, const char *tmp, const char *name, int overwrite)
{
    wchar_t *from = wide_path(d->path, tmp);
    wchar_t *to = from ? wide_path(d->path, name) : NULL;
    int rc = -1;
    /* Without MOVEFILE_REPLACE_EXISTING the rename fails when the target
     * exists, in one step; WRITE_THROUGH returns once it is on disk. */
    DWORD flags = MOVEFILE_WRITE_THROUGH | (overwrite ? MOVEFILE_REPLACE_EXISTING : 0);
    if (to)
        rc = MoveFileExW(from, to, flags) ? 0 : fail_win();
    free(from);
    free(to);
    return rc;
}

void uni1__dir_unlink(const uni1_dir *d, const char *name)
{
    wchar_t *w = wide_path(d->path, name);
    if (w)
        DeleteFileW(w);
    free(w);
}

void uni1__dir_sync(const uni1_dir *d)
{
    (void)d; /* the rename was written through (MOVEFILE_WRITE_THROUGH) */
}

int uni1__file_set_public(int fd)
{
    (void)fd;
    return 0;
}

int uni1__file_sync(int fd)
{
    HANDLE h = (HANDLE)_get_osfhandle(fd);
    if (h == INVALID_HANDLE_VALUE) {
        errno = EBADF;
        return -1;
    }
    return FlushFileBuffers(h) ? 0 : fail_win();
}

ssize_t uni1__pread(int fd, void *buf, size_t len, long long offset)
{
    HANDLE h = (HANDLE)_get_osfhandle(fd);
    if (h == INVALID_HANDLE_VALUE) {
        errno = EBADF;
        return -1;
    }
    OVERLAPPED at;
    memset(&at, 0, sizeof at);
    at.Offset = (DWORD)((unsigned long long)offset & 0xffffffffu);
    at.OffsetHigh = (DWORD)((unsigned long long)offset >> 32);
    DWORD got = 0;
    if (len > 0x40000000u)
        len = 0x40000000u;
    if (!ReadFile(h, buf, (DWORD)len, &got, &at)) {
        if (GetLastError() == ERROR_HANDLE_EOF)
            return 0;
        return fail_win();
    }
    return (ssize_t)got;
}

int uni1__open_read(const char *path)
{
    wchar_t *w = wide_path(path, NULL);
    if (!w)
        return -1;
    int fd = _wopen(w, _O_RDONLY | _O_BINARY | _O_NOINHERIT);
    free(w);
    return fd;
}

FILE *uni1__tmpfile(void)
{
    wchar_t dir[MAX_PATH + 1], name[MAX_PATH + 1];
    if (!GetTempPathW(MAX_PATH + 1, dir) || !GetTempFileNameW(dir, L"un1", 0, name))
        return NULL;
    /* D: deleted when closed; T: kept in memory when it fits. */
    FILE *f = _wfopen(name, L"w+bDT");
    if (!f)
        DeleteFileW(name);
    return f;
}

void uni1__random_bytes(unsigned char *out, size_t n, unsigned salt)
{
    for (size_t i = 0; i < n; i++) {
        unsigned int r;
        if (rand_s(&r) != 0)
            r = (unsigned)GetCurrentProcessId() * 2654435761u ^ salt ^ (unsigned)(i * 40503u);
        out[i] = (unsigned char)r;
    }
}

/* ---- sockets and the engine's wakeup --------------------------------------- */

curl_socket_t uni1__socket_open(int family, int type, int protocol)
{
    return WSASocketW(family, type, protocol, NULL, 0,
                      WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
}

int uni1__socket_close(curl_socket_t s)
{
    return closesocket(s) == 0 ? 0 : -1;
}

/* A connected loopback TCP pair (what Python's socket.socketpair() does on
 * Windows), both ends non-blocking. */
int uni1__wakeup_open(int fds[2])
{
    SOCKET l = uni1__socket_open(AF_INET, SOCK_STREAM, IPPROTO_TCP), a = INVALID_SOCKET,
           c = INVALID_SOCKET;
    struct sockaddr_in addr;
    int len = sizeof addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    u_long on = 1;
    if (l == INVALID_SOCKET || bind(l, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(l, (struct sockaddr *)&addr, &len) != 0 || listen(l, 1) != 0)
        goto fail;
    c = uni1__socket_open(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (c == INVALID_SOCKET || connect(c, (struct sockaddr *)&addr, sizeof addr) != 0)
        goto fail;
    a = accept(l, NULL, NULL);
    if (a == INVALID_SOCKET || ioctlsocket(a, FIONBIO, &on) != 0 ||
        ioctlsocket(c, FIONBIO, &on) != 0)
        goto fail;
    closesocket(l);
    fds[0] = (int)a; /* SOCKET values are 32-bit significant */
    fds[1] = (int)c;
    return 0;
fail:
    if (a != INVALID_SOCKET)
        closesocket(a);
    if (c != INVALID_SOCKET)
        closesocket(c);
    if (l != INVALID_SOCKET)
        closesocket(l);
    errno = EIO;
    return -1;
}

void uni1__wakeup_signal(int fd)
{
    char one = 1;
    send((SOCKET)fd, &one, 1, 0);
}

void uni1__wakeup_drain(int fd)
{
    char buf[64];
    while (recv((SOCKET)fd, buf, sizeof buf, 0) > 0)
        ;
}

void uni1__wakeup_close(int fds[2])
{
    closesocket((SOCKET)fds[0]);
    closesocket((SOCKET)fds[1]);
}

/* ---- threads ------------------------------------------------------------- */

void uni1__block_signals(void) {}

int uni1__cond_init_monotonic(pthread_cond_t *cv)
{
    return pthread_cond_init(cv, NULL);
}

int uni1__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, const struct timespec *at)
{
    struct timespec now, rel = {0, 0};
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ns = ((long long)at->tv_sec - (long long)now.tv_sec) * 1000000000LL +
                   (long long)(at->tv_nsec - now.tv_nsec);
    if (ns <= 0)
        return ETIMEDOUT;
    rel.tv_sec = (time_t)(ns / 1000000000LL);
    rel.tv_nsec = (long)(ns % 1000000000LL);
    return pthread_cond_timedwait_relative_np(cv, mu, &rel);
}

#endif
