/* A budget of threads shared by several streams (nntm_thread_budget, nntm_stream.h): the
 * internal side.  A thread that decodes under a budget holds one of its slots while it runs;
 * nntm_budget_enter/leave count the threads that run at once (the peak), apart from the
 * slots, so that the count would show a thread run without a slot. */
#ifndef NNTM_COMMON_THREADS_H
#define NNTM_COMMON_THREADS_H

#include <stdatomic.h>
#include <stdint.h>

#include "nntm/nntm.h"
#include "nntm/nntm_stream.h"

/* Take a slot, waiting for one to be free. */
void nntm_budget_acquire(nntm_thread_budget *b);
/* Take a slot if one is free now: 1, else 0. */
int nntm_budget_try_acquire(nntm_thread_budget *b);
/* Give a slot back. */
void nntm_budget_release(nntm_thread_budget *b);
/* A thread starts / stops decoding under b (the running count and its peak). */
void nntm_budget_enter(nntm_thread_budget *b);
void nntm_budget_leave(nntm_thread_budget *b);
/* The caller's thread takes a slot (waiting for one) and starts under b; gives it back. */
void nntm_budget_begin(nntm_thread_budget *b);
void nntm_budget_end(nntm_thread_budget *b);

/* Items (a tensor's substreams [1.8]) taken in order from a shared counter by the caller
 * and by threads it starts: the decoder's and the encoder's substreams. */
typedef struct nntm_items {
    int64_t count;          /* items */
    atomic_llong next;      /* the next item to take */
    atomic_int stop;        /* an item failed: take no more */
    void (*run)(void *arg); /* a started thread's work: take items until none is left */
    int (*take)(void *arg); /* the caller's: take one item; 0 when none is left (or stop) */
    void *arg;
} nntm_items;

/* The next item to take (0 .. count - 1), or -1 when none is left or one failed. */
static inline int64_t nntm_items_claim(nntm_items *it) {
    if (atomic_load(&it->stop)) return -1;
    int64_t k = atomic_fetch_add(&it->next, 1);
    return k < it->count ? k : -1;
}

/* An item failed: no more are taken. */
static inline void nntm_items_fail(nntm_items *it) { atomic_store(&it->stop, 1); }

/* Reset the counter and run every item of it on up to threads threads, the caller's among
 * them, then join the started threads.  Without a budget the other threads start at once;
 * with one (the caller holds its own slot), the caller starts another thread before each
 * item it takes while a slot is free and more items are left than threads to take them;
 * such a thread holds its slot until its run returns. */
void nntm_items_run(nntm_items *it, int32_t threads, nntm_thread_budget *budget);

/* nntm_decode_kernel_threads with the substream threads (beyond the caller's, which holds
 * its slot already) taken from budget (NULL: threads - 1 of them, no budget). */
int nntm_decode_kernel_budget(const nntm_kernel_params *params, const uint8_t *data,
                              size_t size, int32_t dtype, const nntm_reference *ref,
                              void *recon, int32_t *levels_out, nntm_buffer *cu_trace,
                              int32_t threads, nntm_thread_budget *budget);

#endif
