/* Stackful coroutines on Windows fibers (see fiber.h; POSIX: fiber.c). A
 * thread becomes a fiber at its first resume and a thread again at
 * uni1__fiber_trim. A fiber's start routine loops, so a finished fiber is
 * kept and reused for the next task of its thread with its stack. */
#ifdef _WIN32
#include <windows.h>

#include "fiber.h"

#include <stdlib.h>

struct uni1_fiber {
    void *handle;
    void *back; /* the resumer */
    void (*fn)(void *);
    void *arg;
    int finished;
    uni1_fiber *next_free;
};

static _Thread_local uni1_fiber *current;
static _Thread_local void *thread_fiber;
static _Thread_local int converted; /* this file made the thread a fiber */
static _Thread_local uni1_fiber *spare;
static _Thread_local unsigned n_spare;
#define UNI1_SPARE_FIBERS 64

static void WINAPI start(void *arg)
{
    uni1_fiber *f = arg;
    for (;;) {
        f->fn(f->arg);
        f->finished = 1;
        current = NULL;
        SwitchToFiber(f->back);
    }
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
        /* Reserved, committed on demand behind Windows's own guard page. */
        f->handle = CreateFiberEx(0, UNI1_FIBER_STACK, FIBER_FLAG_FLOAT_SWITCH, start, f);
        if (!f->handle) {
            free(f);
            return NULL;
        }
    }
    f->fn = fn;
    f->arg = arg;
    f->finished = 0;
    f->next_free = NULL;
    return f;
}

int uni1__fiber_resume(uni1_fiber *f)
{
    if (!thread_fiber) {
        if (IsThreadAFiber()) {
            thread_fiber = GetCurrentFiber();
        } else {
            thread_fiber = ConvertThreadToFiberEx(NULL, FIBER_FLAG_FLOAT_SWITCH);
            converted = thread_fiber != NULL;
        }
        if (!thread_fiber)
            abort(); /* no memory for the thread's fiber state: nothing can run */
    }
    f->back = thread_fiber;
    current = f;
    SwitchToFiber(f->handle);
    current = NULL;
    return f->finished;
}

void uni1__fiber_yield(void)
{
    uni1_fiber *f = current;
    if (!f)
        return;
    current = NULL;
    SwitchToFiber(f->back);
    current = f;
}

uni1_fiber *uni1__fiber_current(void)
{
    return current;
}

static void destroy(uni1_fiber *f)
{
    DeleteFiber(f->handle);
    free(f);
}

void uni1__fiber_free(uni1_fiber *f)
{
    if (!f)
        return;
    if (n_spare < UNI1_SPARE_FIBERS) {
        f->next_free = spare;
        spare = f;
        n_spare++;
        return;
    }
    destroy(f);
}

/* Windows grows a fiber's stack through a guard page below the committed
 * part; decommitting pages under it would break that, so they stay. */
void uni1__fiber_release_unused(void) {}

void uni1__fiber_trim(void)
{
    while (spare) {
        uni1_fiber *f = spare;
        spare = f->next_free;
        destroy(f);
    }
    n_spare = 0;
    if (converted && !current) {
        ConvertFiberToThread();
        converted = 0;
        thread_fiber = NULL;
    }
}

#endif
