/* The Windows halves of the core's fibers (fiber_win.c) and platform calls
 * (platform_win.c), cross-compiled with MinGW-w64 and run under wine by
 * `make mingw-test`. Plain asserts (no cmocka build for Windows here); the
 * first argument is a directory to create and work in. */
#include <winsock2.h>
#include <windows.h>

#include <errno.h>
#include <io.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fiber.h"
#include "platform.h"

static int failures;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* ---- fibers ---------------------------------------------------------------- */

static char trace[64];
static size_t n_trace;

static void step(void *arg)
{
    char c = *(const char *)arg;
    for (int i = 0; i < 3; i++) {
        trace[n_trace++] = c;
        uni1__fiber_yield();
    }
}

static unsigned deep(unsigned n)
{
    volatile char pad[1024];
    pad[0] = (char)n;
    return n == 0 ? 0 : pad[0] + deep(n - 1) - (char)n + 1;
}

static void use_stack(void *arg)
{
    *(unsigned *)arg = deep(150); /* ~150 KB of the fiber's 256 KB */
}

static void test_fibers(void)
{
    CHECK(uni1__fiber_current() == NULL);
    char a = 'a', b = 'b';
    uni1_fiber *fa = uni1__fiber_new(step, &a), *fb = uni1__fiber_new(step, &b);
    CHECK(fa && fb);
    int done_a = 0, done_b = 0;
    while (!done_a || !done_b) {
        if (!done_a)
            done_a = uni1__fiber_resume(fa);
        if (!done_b)
            done_b = uni1__fiber_resume(fb);
    }
    trace[n_trace] = 0;
    CHECK(strcmp(trace, "ababab") == 0);
    CHECK(uni1__fiber_current() == NULL);
    uni1__fiber_free(fa);
    uni1__fiber_free(fb);
    /* A finished fiber's stack is reused for the next one. */
    unsigned got = 1;
    uni1_fiber *fc = uni1__fiber_new(use_stack, &got);
    CHECK(fc == fb);
    CHECK(uni1__fiber_resume(fc) == 1);
    CHECK(got == 150);
    uni1__fiber_free(fc);
    uni1__fiber_trim();
    CHECK(!IsThreadAFiber());
}

/* ---- files ----------------------------------------------------------------- */

static void write_all(int fd, const char *s)
{
    CHECK(_write(fd, s, (unsigned)strlen(s)) == (int)strlen(s));
}

static void read_back(const wchar_t *path, const char *want)
{
    char buf[64] = {0};
    FILE *f = _wfopen(path, L"rb");
    CHECK(f != NULL);
    if (!f)
        return;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    CHECK(n == strlen(want) && memcmp(buf, want, n) == 0);
}

static void test_files(const char *root)
{
    uni1_dir d;
    CHECK(uni1__dir_open(&d, root) == 0);
    uni1_dir missing;
    errno = 0;
    CHECK(uni1__dir_open(&missing, "Z:\\no\\such\\dir") == -1 && errno == ENOENT);

    /* A name in UTF-8 arrives as that character on disk. */
    const char *name = "\xc3\xa9t\xc3\xa9.png"; /* "été.png" */
    CHECK(!uni1__dir_has(&d, name));
    int fd = uni1__dir_create(&d, ".tmp1.part");
    CHECK(fd >= 0);
    errno = 0;
    CHECK(uni1__dir_create(&d, ".tmp1.part") == -1 && errno == EEXIST);
    write_all(fd, "first-bytes");
    char head[5] = {0};
    CHECK(uni1__pread(fd, head, 4, 6) == 4 && memcmp(head, "byte", 4) == 0);
    CHECK(uni1__pread(fd, head, 4, 100) == 0);
    CHECK(uni1__file_set_public(fd) == 0);
    CHECK(uni1__file_sync(fd) == 0);
    CHECK(_close(fd) == 0);
    CHECK(uni1__dir_publish(&d, ".tmp1.part", name, 0) == 0);
    uni1__dir_sync(&d);
    CHECK(uni1__dir_has(&d, name));
    CHECK(!uni1__dir_has(&d, ".tmp1.part"));

    /* Without overwrite an existing file stays as it was. */
    fd = uni1__dir_create(&d, ".tmp2.part");
    write_all(fd, "second");
    CHECK(_close(fd) == 0);
    errno = 0;
    CHECK(uni1__dir_publish(&d, ".tmp2.part", name, 0) == -1 && errno == EEXIST);
    wchar_t path[MAX_PATH];
    MultiByteToWideChar(CP_UTF8, 0, root, -1, path, MAX_PATH);
    wcscat(path, L"\\\x00e9t\x00e9.png");
    read_back(path, "first-bytes");
    CHECK(uni1__dir_publish(&d, ".tmp2.part", name, 1) == 0);
    read_back(path, "second");
    CHECK(!uni1__dir_has(&d, ".tmp2.part"));

    int rfd = uni1__open_read(root);
    CHECK(rfd == -1); /* a directory is not a readable file */
    char full[MAX_PATH];
    snprintf(full, sizeof full, "%s\\%s", root, name);
    rfd = uni1__open_read(full);
    CHECK(rfd >= 0);
    char six[7] = {0};
    CHECK(_read(rfd, six, 6) == 6 && strcmp(six, "second") == 0);
    _close(rfd);

    /* The open directory cannot be renamed away under a download. */
    wchar_t wroot[MAX_PATH], moved[MAX_PATH];
    MultiByteToWideChar(CP_UTF8, 0, root, -1, wroot, MAX_PATH);
    wcscpy(moved, wroot);
    wcscat(moved, L"-moved");
    CHECK(!MoveFileW(wroot, moved));

    uni1__dir_unlink(&d, name);
    CHECK(!uni1__dir_has(&d, name));
    uni1__dir_close(&d);
    CHECK(d.fd == -1);
    CHECK(MoveFileW(wroot, moved));
    CHECK(RemoveDirectoryW(moved));

    FILE *t = uni1__tmpfile();
    CHECK(t != NULL);
    if (t) {
        char back[8] = {0};
        CHECK(fwrite("scratch", 1, 7, t) == 7 && fflush(t) == 0);
        rewind(t);
        CHECK(fread(back, 1, 7, t) == 7 && strcmp(back, "scratch") == 0);
        fclose(t);
    }

    unsigned char r1[16] = {0}, r2[16] = {0};
    uni1__random_bytes(r1, sizeof r1, 1);
    uni1__random_bytes(r2, sizeof r2, 1);
    CHECK(memcmp(r1, r2, sizeof r1) != 0);
}

/* ---- wakeup, time, conditions ---------------------------------------------- */

static int readable(int fd)
{
    fd_set set;
    FD_ZERO(&set);
    FD_SET((SOCKET)fd, &set);
    struct timeval tv = {0, 200000};
    return select(0, &set, NULL, NULL, &tv) == 1;
}

static void test_wakeup(void)
{
    int fds[2];
    CHECK(uni1__wakeup_open(fds) == 0);
    uni1__wakeup_drain(fds[0]); /* empty and non-blocking: returns at once */
    CHECK(!readable(fds[0]));
    uni1__wakeup_signal(fds[1]);
    uni1__wakeup_signal(fds[1]);
    CHECK(readable(fds[0]));
    uni1__wakeup_drain(fds[0]);
    CHECK(!readable(fds[0]));
    uni1__wakeup_close(fds);

    curl_socket_t s = uni1__socket_open(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    CHECK(s != CURL_SOCKET_BAD);
    DWORD flags = 1;
    CHECK(GetHandleInformation((HANDLE)s, &flags) && !(flags & HANDLE_FLAG_INHERIT));
    CHECK(uni1__socket_close(s) == 0);
}

static void test_time_and_conditions(void)
{
    struct tm tm = {.tm_year = 124, .tm_mon = 1, .tm_mday = 29, .tm_hour = 12};
    CHECK(uni1__timegm(&tm) == (time_t)1709208000);

    unsigned seed = 42;
    double lo = 1, hi = 0;
    for (int i = 0; i < 1000; i++) {
        double x = uni1__rand01(&seed);
        CHECK(x >= 0 && x <= 1);
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    CHECK(lo < 0.1 && hi > 0.9);

    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    CHECK(uni1__cond_init_monotonic(&cv) == 0);
    struct timespec start, at, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    at = start;
    at.tv_nsec += 100000000L;
    if (at.tv_nsec >= 1000000000L) {
        at.tv_sec++;
        at.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&mu);
    int r;
    do /* a spurious wake-up may come first */
        r = uni1__cond_wait_until(&cv, &mu, &at);
    while (r == 0);
    clock_gettime(CLOCK_MONOTONIC, &end);
    CHECK(r == ETIMEDOUT);
    double waited = (double)(end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
    CHECK(waited >= 0.09); /* a monotonic deadline, not one read as wall time */
    CHECK(uni1__cond_wait_until(&cv, &mu, &start) == ETIMEDOUT);
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: win_platform DIR\n");
        return 2;
    }
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0)
        return 2;
    test_fibers();
    wchar_t wdir[MAX_PATH];
    MultiByteToWideChar(CP_UTF8, 0, argv[1], -1, wdir, MAX_PATH);
    CreateDirectoryW(wdir, NULL);
    test_files(argv[1]);
    test_wakeup();
    test_time_and_conditions();
    WSACleanup();
    if (failures) {
        fprintf(stderr, "win_platform: %d check(s) failed\n", failures);
        return 1;
    }
    printf("win_platform: all checks passed\n");
    return 0;
}
