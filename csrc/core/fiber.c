/* Stackful coroutines on POSIX ucontext (see fiber.h). Stacks are mmap'd with
 * a guard page below them, and a few are kept for reuse per thread. The
 * sanitizer and valgrind are told about every stack switch, or they would
 * take the switch for a wild stack pointer. Windows: fiber_win.c. */
#ifndef _WIN32
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fiber.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNI1_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define UNI1_ASAN 1
#endif
#ifdef UNI1_ASAN
#include <dlfcn.h>
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
/* ASan's interceptor of swapcontext prints a warning on first use (it cannot
 * know about the stacks); with the switches annotated below and each stack's
 * shadow cleared before it is entered, libc's own swapcontext is enough, and
 * the sanitizer run's output stays clean for the tests that read it. */
static int (*real_swapcontext)(ucontext_t *, const ucontext_t *);
static int switch_context(ucontext_t *from, const ucontext_t *to)
{
    if (!real_swapcontext) {
        void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
        if (libc)
            real_swapcontext =
                (int (*)(ucontext_t *, const ucontext_t *))dlsym(libc, "swapcontext");
    }
    return real_swapcontext ? real_swapcontext(from, to) : swapcontext(from, to);
}
#else
#define switch_context swapcontext
#endif
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNI1_VALGRIND 1
#endif
#endif

struct uni1_fiber {
    ucontext_t ctx;
    ucontext_t *back; /* the resumer's context */
    void (*fn)(void *);
    void *arg;
    char *map; /* guard page + stack */
    size_t map_len;
    int finished;
    unsigned valgrind_id;
    uni1_fiber *next_free;
#ifdef UNI1_ASAN
    void *fake_stack;
    const void *back_bottom;
    size_t back_size;
#endif
};

static _Thread_local uni1_fiber *current;
static _Thread_local ucontext_t thread_ctx;
/* Finished fibers whose stacks are kept for the next task of this thread. */
static _Thread_local uni1_fiber *spare;
static _Thread_local unsigned n_spare;
#define UNI1_SPARE_FIBERS 64

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

static void trampoline(unsigned hi, unsigned lo)
{
    uni1_fiber *f = (uni1_fiber *)(((uintptr_t)hi << 32) | (uintptr_t)lo);
#ifdef UNI1_ASAN
    __sanitizer_finish_switch_fiber(NULL, &f->back_bottom, &f->back_size);
#endif
    f->fn(f->arg);
    f->finished = 1;
    current = NULL;
#ifdef UNI1_ASAN
    /* NULL: this stack is finished, its fake frames can go. */
    __sanitizer_start_switch_fiber(NULL, f->back_bottom, f->back_size);
#endif
    /* uc_link takes it back to the resumer. */
}

static int prepare(uni1_fiber *f)
{
    if (getcontext(&f->ctx) != 0)
        return -1;
    f->ctx.uc_stack.ss_sp = f->map + page_size();
    f->ctx.uc_stack.ss_size = f->map_len - page_size();
    f->ctx.uc_link = &thread_ctx;
#ifdef UNI1_ASAN
    /* A reused stack may hold the poison of its last fiber's frames. */
    __asan_unpoison_memory_region(f->ctx.uc_stack.ss_sp, f->ctx.uc_stack.ss_size);
#endif
    uintptr_t p = (uintptr_t)f;
    makecontext(&f->ctx, (void (*)(void))trampoline, 2, (unsigned)(p >> 32),
                (unsigned)(p & 0xffffffffu));
    f->finished = 0;
    return 0;
}

uni1_fiber *uni1__fiber_new(void (*fn)(void *), void *arg)
{
    uni1_fiber *f = spare;
    if (f) {
        spare = f->next_free;
        n_spare--;
    } else {
        f = calloc(1, sizeof *f);
        if (!f)
            return NULL;
        size_t ps = page_size();
        f->map_len = UNI1_FIBER_STACK + ps;
        void *m = mmap(NULL, f->map_len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (m == MAP_FAILED) {
            free(f);
            return NULL;
        }
        f->map = m;
        /* A stack overflow hits the guard page instead of the heap. */
        mprotect(f->map, ps, PROT_NONE);
#ifdef UNI1_VALGRIND
        f->valgrind_id = VALGRIND_STACK_REGISTER(f->map + ps, f->map + f->map_len);
#endif
    }
    f->fn = fn;
    f->arg = arg;
    f->next_free = NULL;
    if (prepare(f) != 0) {
        uni1__fiber_free(f);
        return NULL;
    }
    return f;
}

int uni1__fiber_resume(uni1_fiber *f)
{
    f->back = &thread_ctx;
    current = f;
#ifdef UNI1_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, f->map + page_size(), f->map_len - page_size());
#endif
    switch_context(&thread_ctx, &f->ctx);
#ifdef UNI1_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    current = NULL;
    return f->finished;
}

void uni1__fiber_yield(void)
{
    uni1_fiber *f = current;
    if (!f)
        return;
    current = NULL;
#ifdef UNI1_ASAN
    __sanitizer_start_switch_fiber(&f->fake_stack, f->back_bottom, f->back_size);
#endif
    switch_context(&f->ctx, f->back);
#ifdef UNI1_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &f->back_bottom, &f->back_size);
#endif
    current = f;
}

uni1_fiber *uni1__fiber_current(void)
{
    return current;
}

static void destroy(uni1_fiber *f)
{
#ifdef UNI1_VALGRIND
    VALGRIND_STACK_DEREGISTER(f->valgrind_id);
#endif
    munmap(f->map, f->map_len);
    free(f);
}

void uni1__fiber_free(uni1_fiber *f)
{
    if (!f)
        return;
    if (n_spare < UNI1_SPARE_FIBERS) {
        /* Give the touched pages back but keep the mapping. */
        madvise(f->map + page_size(), f->map_len - page_size(), MADV_DONTNEED);
        f->next_free = spare;
        spare = f;
        n_spare++;
        return;
    }
    destroy(f);
}

void uni1__fiber_release_unused(void)
{
    uni1_fiber *f = current;
    if (!f)
        return;
    volatile char here = 0;
    size_t ps = page_size();
    uintptr_t lo = (uintptr_t)f->map + ps;
    /* Nothing below this frame is live (the page it is in stays). */
    uintptr_t hi = (uintptr_t)&here & ~(uintptr_t)(ps - 1);
    (void)here;
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void uni1__fiber_trim(void)
{
    while (spare) {
        uni1_fiber *f = spare;
        spare = f->next_free;
        destroy(f);
    }
    n_spare = 0;
}

#endif
