/*
 * A fork–join pool for the project's ops: `parallel_for(count, body, context)` runs
 * body(context, begin, end) over [0, count) split into one contiguous range per thread, the
 * caller's thread taking the first, and returns when every range is done.
 *
 * The pool is made on first use with one thread per CPU this process may run on (at most
 * PARALLEL_MAX_THREADS); TensorFlow's eager runtime runs one op at a time here, so the pool is
 * never entered twice at once (a mutex makes that so anyway). Ranges are static: the ops split
 * work into units of equal cost, so no stealing is needed.
 */
#ifndef DIFFUSION_PARALLEL_H
#define DIFFUSION_PARALLEL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#define PARALLEL_MAX_THREADS 16

typedef void (*parallel_body)(void* context, int64_t begin, int64_t end);

static struct {
  pthread_once_t once;
  pthread_mutex_t enter, lock;
  pthread_cond_t start, finished;
  int threads;
  uint64_t generation;
  int pending;
  parallel_body body;
  void* context;
  int64_t count;
} parallel_pool = {PTHREAD_ONCE_INIT, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
                   PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER};

static void parallel_range(int thread, int64_t* begin, int64_t* end) {
  const int64_t count = parallel_pool.count, threads = parallel_pool.threads;
  *begin = count * thread / threads;
  *end = count * (thread + 1) / threads;
}

static void* parallel_worker(void* arg) {
  const int thread = (int)(intptr_t)arg;
  uint64_t seen = 0;
  for (;;) {
    pthread_mutex_lock(&parallel_pool.lock);
    while (parallel_pool.generation == seen) {
      pthread_cond_wait(&parallel_pool.start, &parallel_pool.lock);
    }
    seen = parallel_pool.generation;
    pthread_mutex_unlock(&parallel_pool.lock);
    int64_t begin, end;
    parallel_range(thread, &begin, &end);
    if (begin < end) parallel_pool.body(parallel_pool.context, begin, end);
    pthread_mutex_lock(&parallel_pool.lock);
    if (--parallel_pool.pending == 0) pthread_cond_signal(&parallel_pool.finished);
    pthread_mutex_unlock(&parallel_pool.lock);
  }
  return 0;
}

static void parallel_init(void) {
  cpu_set_t set;
  int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  if (cpus > PARALLEL_MAX_THREADS) cpus = PARALLEL_MAX_THREADS;
  parallel_pool.threads = 1;
  for (int t = 1; t < cpus; t++) {
    pthread_t worker;
    if (pthread_create(&worker, 0, parallel_worker, (void*)(intptr_t)t) != 0) break;
    pthread_detach(worker);
    parallel_pool.threads++;
  }
}

static void parallel_for(int64_t count, parallel_body body, void* context) {
  pthread_once(&parallel_pool.once, parallel_init);
  if (parallel_pool.threads == 1 || count < 2) {
    body(context, 0, count);
    return;
  }
  pthread_mutex_lock(&parallel_pool.enter);
  pthread_mutex_lock(&parallel_pool.lock);
  parallel_pool.body = body;
  parallel_pool.context = context;
  parallel_pool.count = count;
  parallel_pool.pending = parallel_pool.threads - 1;
  parallel_pool.generation++;
  pthread_cond_broadcast(&parallel_pool.start);
  pthread_mutex_unlock(&parallel_pool.lock);
  int64_t begin, end;
  parallel_range(0, &begin, &end);
  if (begin < end) body(context, begin, end);
  pthread_mutex_lock(&parallel_pool.lock);
  while (parallel_pool.pending > 0) {
    pthread_cond_wait(&parallel_pool.finished, &parallel_pool.lock);
  }
  pthread_mutex_unlock(&parallel_pool.lock);
  pthread_mutex_unlock(&parallel_pool.enter);
}

#endif
