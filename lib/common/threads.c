/* nntm_thread_budget: at most size threads decode at once under one budget, however many
 * streams share it (nntm-dec and DecoderApp decode N tensors at once, a stream each, and a
 * tensor with entry points [1.8] on the slots the other tensors leave free). */
#include "threads.h"

#include <pthread.h>
#include <stdlib.h>

struct nntm_thread_budget {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    int32_t size;      /* slots */
    int32_t in_use;    /* slots taken */
    int32_t running;   /* threads between enter and leave */
    int32_t peak;      /* the most running at once */
};

int nntm_thread_budget_create(nntm_thread_budget **out, int32_t threads) {
    if (!out) return NNTM_ERR_ARG;
    *out = NULL;
    if (threads < 1 || threads > NNTM_MAX_THREADS) return NNTM_ERR_ARG;
    nntm_thread_budget *b = calloc(1, sizeof *b);
    if (!b) return NNTM_ERR_NOMEM;
    if (pthread_mutex_init(&b->lock, NULL)) {
        free(b);
        return NNTM_ERR_NOMEM;
    }
    if (pthread_cond_init(&b->freed, NULL)) {
        pthread_mutex_destroy(&b->lock);
        free(b);
        return NNTM_ERR_NOMEM;
    }
    b->size = threads;
    *out = b;
    return NNTM_OK;
}

void nntm_thread_budget_destroy(nntm_thread_budget **b) {
    if (!b || !*b) return;
    pthread_cond_destroy(&(*b)->freed);
    pthread_mutex_destroy(&(*b)->lock);
    free(*b);
    *b = NULL;
}

int32_t nntm_thread_budget_peak(nntm_thread_budget *b) {
    if (!b) return 0;
    pthread_mutex_lock(&b->lock);
    int32_t peak = b->peak;
    pthread_mutex_unlock(&b->lock);
    return peak;
}

void nntm_budget_acquire(nntm_thread_budget *b) {
    pthread_mutex_lock(&b->lock);
    while (b->in_use >= b->size) pthread_cond_wait(&b->freed, &b->lock);
    b->in_use++;
    pthread_mutex_unlock(&b->lock);
}

int nntm_budget_try_acquire(nntm_thread_budget *b) {
    pthread_mutex_lock(&b->lock);
    int ok = b->in_use < b->size;
    if (ok) b->in_use++;
    pthread_mutex_unlock(&b->lock);
    return ok;
}

void nntm_budget_release(nntm_thread_budget *b) {
    pthread_mutex_lock(&b->lock);
    b->in_use--;
    pthread_cond_signal(&b->freed);
    pthread_mutex_unlock(&b->lock);
}

void nntm_budget_enter(nntm_thread_budget *b) {
    pthread_mutex_lock(&b->lock);
    if (++b->running > b->peak) b->peak = b->running;
    pthread_mutex_unlock(&b->lock);
}

void nntm_budget_leave(nntm_thread_budget *b) {
    pthread_mutex_lock(&b->lock);
    b->running--;
    pthread_mutex_unlock(&b->lock);
}

void nntm_budget_begin(nntm_thread_budget *b) {
    nntm_budget_acquire(b);
    nntm_budget_enter(b);
}

void nntm_budget_end(nntm_thread_budget *b) {
    nntm_budget_leave(b);
    nntm_budget_release(b);
}

/* What a started thread runs: the items' work, inside a budget slot when there is one. */
typedef struct items_thread {
    nntm_items *it;
    nntm_thread_budget *budget;
} items_thread;

static void *items_main(void *arg) {
    items_thread *t = arg;
    if (t->budget) nntm_budget_enter(t->budget); /* its slot was taken for it */
    t->it->run(t->it->arg);
    if (t->budget) nntm_budget_end(t->budget);
    return NULL;
}

void nntm_items_run(nntm_items *it, int32_t threads, nntm_thread_budget *budget) {
    atomic_store(&it->next, 0);
    atomic_store(&it->stop, 0);
    if (threads > it->count) threads = (int32_t)it->count;
    if (threads > NNTM_MAX_THREADS) threads = NNTM_MAX_THREADS;
    items_thread t = {it, budget};
    pthread_t tid[NNTM_MAX_THREADS];
    int started = 0, recruit = threads > 1;
    do {
        while (recruit && !atomic_load(&it->stop) && started + 1 < threads &&
               (!budget || (it->count - atomic_load(&it->next) > started + 1 &&
                            nntm_budget_try_acquire(budget)))) {
            if (pthread_create(&tid[started], NULL, items_main, &t) != 0) {
                if (budget) nntm_budget_release(budget);
                recruit = 0;
                break;
            }
            started++;
        }
    } while (it->take(it->arg));
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
}
