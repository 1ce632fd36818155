/*
 * How the process's allocator treats TensorFlow's activations, set when the project's ops load.
 *
 * TensorFlow's CPU allocator takes every tensor from malloc. glibc serves a block above its mmap
 * threshold (128 KB at start, raised only when such a block is freed) with fresh pages and
 * returns them to the system on free, so that each activation of a training step, a few hundred
 * KB to a few MB, costs a page fault and a page zeroed per 4 KB: about 5 % of a step of the
 * book's U-Net went to zeroing pages in the kernel (perf, 2-core EPYC). With the threshold at
 * 64 MB and the heap trimmed only above 256 MB, freed activations stay in the heap for the next
 * step. The settings are glibc's own tunables (the same as MALLOC_MMAP_THRESHOLD_ and
 * MALLOC_TRIM_THRESHOLD_ in the environment), made before any tensor is allocated, unless the
 * environment sets them.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdlib.h>

__attribute__((constructor)) static void keep_freed_activations(void) {
#ifdef M_MMAP_THRESHOLD
  if (!getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 64 << 20);
  if (!getenv("MALLOC_TRIM_THRESHOLD_")) mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}
