/*
 * Eight-lane float vectors for the project's ops, with GCC's vector extensions (one AVX register
 * where the compiler may use AVX, two SSE halves otherwise; no intrinsics): loads and stores at
 * any alignment, a broadcast, a blend, and e^x, which compilers do not vectorise from expf.
 */
#ifndef DIFFUSION_VECTOR8_H
#define DIFFUSION_VECTOR8_H

#include <stdint.h>
#include <string.h>

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8f load8(const float* p) {
  v8f v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void store8(float* p, v8f v) { memcpy(p, &v, sizeof v); }

static inline v8f splat(float value) {
  return (v8f){value, value, value, value, value, value, value, value};
}

static inline v8f blend(v8i mask, v8f yes, v8f no) {
  return (v8f)(((v8i)yes & mask) | ((v8i)no & ~mask));
}

/*
 * e^x to about 1e-7 relative (Cephes' expf: e^x = 2^k e^r, |r| ≤ ln2/2, a degree-6 polynomial
 * for e^r), x clamped to [−87, 88].
 */
static inline v8f exp8(v8f x) {
  x = blend(x < splat(-87.0f), splat(-87.0f), x);
  x = blend(x > splat(88.0f), splat(88.0f), x);
  const v8f t = x * splat(1.44269504088896341f) + splat(0.5f);
  v8i k = __builtin_convertvector(t, v8i); /* toward zero; then down to ⌊t⌋ */
  k += (v8i)(__builtin_convertvector(k, v8f) > t);
  const v8f kf = __builtin_convertvector(k, v8f);
  const v8f r = x - kf * splat(0.693359375f) + kf * splat(2.12194440e-4f);
  v8f p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  p = p * r * r + r + splat(1.0f);
  return p * (v8f)((k + 127) << 23);
}

/* e^x of n values in place, eight at a time (the tail through a padded copy). */
static inline void exp_in_place(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store8(x + i, exp8(load8(x + i)));
  if (i < n) {
    float buffer[8] = {0};
    memcpy(buffer, x + i, (n - i) * sizeof(float));
    store8(buffer, exp8(load8(buffer)));
    memcpy(x + i, buffer, (n - i) * sizeof(float));
  }
}

#endif
