/*
 * A fork–join pool for the project's ops: `parallel_for(count, body, context)` runs
 * body(context, begin, end) over [0, count) split into one contiguous range per thread, and
 * returns when every range is done.
 *
 * The pool is made on first use with one thread per CPU this process may run on (at most
 * PARALLEL_MAX_THREADS). Ranges are static: the ops split work into units of equal cost, so an
 * op's result never depends on which thread ran which range.
 *
 * Each range is claimed before it runs: the caller runs the first, then every range no worker
 * has claimed yet. A worker the system has not scheduled (the machine is busy, or the worker is
 * asleep) therefore never holds the caller up; the caller waits only for ranges a worker is
 * running. A worker that has finished spins for up to PARALLEL_SPIN_NS for the next job before it
 * sleeps on a condition variable: a training step calls the pool every hundred microseconds or
 * so, and on a virtual machine waking a sleeping thread took 100–150 µs. Spinning longer, the
 * workers took the CPU the process's other threads needed, and small ops waited milliseconds.
 */
#ifndef DIFFUSION_PARALLEL_H
#define DIFFUSION_PARALLEL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

#define PARALLEL_MAX_THREADS 16
#define PARALLEL_SPIN_NS 100000

typedef void (*parallel_body)(void* context, int64_t begin, int64_t end);

static struct {
  pthread_once_t once;
  pthread_mutex_t enter, lock;
  pthread_cond_t start;
  int threads, sleepers;
  uint64_t generation;                 /* a new job when it changes (atomic) */
  int claimed[PARALLEL_MAX_THREADS];   /* ranges of the job taken by a thread (atomic) */
  int done;                            /* ranges of the job finished (atomic) */
  parallel_body body;
  void* context;
  int64_t count;
} parallel_pool = {PTHREAD_ONCE_INIT, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
                   PTHREAD_COND_INITIALIZER};

/* A hint to the CPU that this thread is spinning (x86's pause; nothing elsewhere). */
static inline void parallel_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static int64_t parallel_now_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static void parallel_range(int thread, int64_t* begin, int64_t* end) {
  const int64_t count = parallel_pool.count, threads = parallel_pool.threads;
  *begin = count * thread / threads;
  *end = count * (thread + 1) / threads;
}

/* The generation after `seen`: spins a while, then sleeps until the caller signals one. */
static uint64_t parallel_next_job(uint64_t seen) {
  const int64_t until = parallel_now_ns() + PARALLEL_SPIN_NS;
  for (int spins = 0;; spins++) {
    const uint64_t generation = __atomic_load_n(&parallel_pool.generation, __ATOMIC_ACQUIRE);
    if (generation != seen) return generation;
    if ((spins & 63) == 63 && parallel_now_ns() > until) break;
    parallel_pause();
  }
  pthread_mutex_lock(&parallel_pool.lock);
  parallel_pool.sleepers++;
  while (__atomic_load_n(&parallel_pool.generation, __ATOMIC_ACQUIRE) == seen) {
    pthread_cond_wait(&parallel_pool.start, &parallel_pool.lock);
  }
  parallel_pool.sleepers--;
  pthread_mutex_unlock(&parallel_pool.lock);
  return __atomic_load_n(&parallel_pool.generation, __ATOMIC_ACQUIRE);
}

/* Runs range `thread` of the job if no one has claimed it; whether it did. */
static int parallel_claim(int thread) {
  int free = 0;
  if (!__atomic_compare_exchange_n(&parallel_pool.claimed[thread], &free, 1, 0, __ATOMIC_ACQ_REL,
                                   __ATOMIC_ACQUIRE)) {
    return 0;
  }
  int64_t begin, end;
  parallel_range(thread, &begin, &end);
  if (begin < end) parallel_pool.body(parallel_pool.context, begin, end);
  __atomic_fetch_add(&parallel_pool.done, 1, __ATOMIC_ACQ_REL);
  return 1;
}

static void* parallel_worker(void* arg) {
  const int thread = (int)(intptr_t)arg;
  uint64_t seen = 0;
  for (;;) {
    seen = parallel_next_job(seen);
    parallel_claim(thread);
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
  parallel_pool.body = body;
  parallel_pool.context = context;
  parallel_pool.count = count;
  __atomic_store_n(&parallel_pool.done, 0, __ATOMIC_RELAXED);
  for (int t = 0; t < parallel_pool.threads; t++) {
    __atomic_store_n(&parallel_pool.claimed[t], 0, __ATOMIC_RELEASE);
  }
  pthread_mutex_lock(&parallel_pool.lock);
  __atomic_fetch_add(&parallel_pool.generation, 1, __ATOMIC_RELEASE);
  if (parallel_pool.sleepers > 0) pthread_cond_broadcast(&parallel_pool.start);
  pthread_mutex_unlock(&parallel_pool.lock);
  for (int t = 0; t < parallel_pool.threads; t++) parallel_claim(t);
  /* Every range is claimed now; wait for those the workers run. */
  while (__atomic_load_n(&parallel_pool.done, __ATOMIC_ACQUIRE) < parallel_pool.threads) {
    parallel_pause();
  }
  pthread_mutex_unlock(&parallel_pool.enter);
}

#endif
