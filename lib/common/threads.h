/* A budget of threads shared by several streams (nntm_thread_budget, nntm_stream.h): the
 * internal side.  A thread that decodes under a budget holds one of its slots while it runs;
 * nntm_budget_enter/leave count the threads that run at once (the peak), apart from the
 * slots, so that the count would show a thread run without a slot. */
#ifndef NNTM_COMMON_THREADS_H
#define NNTM_COMMON_THREADS_H

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

/* nntm_decode_kernel_threads with the substream threads (beyond the caller's, which holds
 * its slot already) taken from budget (NULL: threads - 1 of them, no budget). */
int nntm_decode_kernel_budget(const nntm_kernel_params *params, const uint8_t *data,
                              size_t size, int32_t dtype, const nntm_reference *ref,
                              void *recon, int32_t *levels_out, nntm_buffer *cu_trace,
                              int32_t threads, nntm_thread_budget *budget);

#endif
