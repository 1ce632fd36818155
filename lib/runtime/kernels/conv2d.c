/*
 * The 2-D convolution and its filter gradient as the project's own TensorFlow ops, for the
 * native backend: NHWC, any kh × kw filter, stride s, explicit padding (pt, pb, pl, pr), output
 * channels a multiple of 8; and a layer's whole backward at stride 1 ("same") as one op.
 *
 *   y[n, i, j, o]  = b[o] + Σ_{a < kh, b < kw} Σ_c x[n, s·i + a − pt, s·j + b − pl, c] · w[a, b, c, o],
 *   ∂w[a, b, c, o] = Σ_{n, i, j} x[n, s·i + a − pt, s·j + b − pl, c] · dy[n, i, j, o],
 *
 * with x zero outside the image. The input gradient is the first one again, of dy with the
 * filter flipped and transposed (at stride 2 as a sub-pixel convolution: conv_gradients.ts), so
 * this file serves all three.
 *
 * TensorFlow's CPU kernels (Eigen's tensor contractions) took 17.3 ms forward and 20.5 ms for
 * the filter gradient at 64×16×16×64 → 64 on the 2-core EPYC, where these loops take about 11
 * and 14: the classic register-blocked matrix multiply, the im2col matrix never built:
 *
 * - forward: the input is copied once into zero-padded images x̃ [N, H + pt + pb, W + pl + pr, C],
 *   so that output pixel (i, j) reads x̃[s·i + a, s·j + b] for tap (a, b) with no bounds to test.
 *   A block of 6 output pixels (consecutive in n, i, j) × 16 output channels lives in 12 vector
 *   registers; each (tap, c) adds one broadcast x value times one packed filter row into each.
 * - filter gradient: a block of 5 or 6 input channels × 16 output channels of ∂w for one tap
 *   accumulates x̃[s·i + a, s·j + b, c] · dy[i, j, o] over the pixels of a group of images (a few
 *   hundred pixels, whose x̃ and dy stay in the core's cache while every block is done on
 *   them), group by group.
 *
 * Both split their work over the machine's cores (parallel.h): the forward by blocks of
 * pixels, the filter gradient by (tap, channel block), each thread owning the ∂w it writes; the
 * result does not depend on the number of threads. Sums run in another order than
 * TensorFlow's (relative difference ~1e-7 at these sizes).
 */
#define _GNU_SOURCE
#include "tf_kernel_api.h"
#include "parallel.h"
#include "vector8.h"

/* Output pixels a forward block computes, and input channels a filter-gradient block holds. */
enum { PIXELS = 6, CHANNELS = 6 };

/*
 * The geometry both ops share: x [N, H, W, C] padded by pt, pb rows and pl, pr columns into
 * x̃ [N, H̃, W̃, C], a kh × kw filter to O channels at stride s, the output [N, Ho, Wo, O].
 */
typedef struct {
  int64_t n, h, w, c, o, kh, kw, s, pt, pb, pl, pr, hp, wp, ho, wo;
} Geometry;

/* Pads [top, bottom, left, right]. */
static Geometry geometry(int64_t n, int64_t h, int64_t w, int64_t c, int64_t o, int64_t kh,
                         int64_t kw, int64_t s, const int64_t* pads) {
  const int64_t hp = h + pads[0] + pads[1], wp = w + pads[2] + pads[3];
  return (Geometry){n, h, w, c, o, kh, kw, s, pads[0], pads[1], pads[2], pads[3], hp, wp,
                    (hp - kh) / s + 1, (wp - kw) / s + 1};
}

/* The stride-1 "same" geometry of a k × k filter, k odd. */
static Geometry same_geometry(int64_t n, int64_t h, int64_t w, int64_t c, int64_t o, int64_t k) {
  const int64_t p = (k - 1) / 2, pads[4] = {p, p, p, p};
  return geometry(n, h, w, c, o, k, k, 1, pads);
}

/*
 * Memory the ops reuse from call to call (x̃ and the packed filter): a fresh allocation of a few
 * megabytes is fresh pages, a page fault every 4 KB, on every call. The ops hold `lock` while
 * they use it.
 */
static struct {
  pthread_mutex_t lock;
  float* data;
  size_t floats;
} scratch = {PTHREAD_MUTEX_INITIALIZER, 0, 0};

/* The scratch memory, at least `floats` long (0 when out of memory); hold scratch.lock. */
static float* scratch_reserve(size_t floats) {
  if (floats > scratch.floats) {
    free(scratch.data);
    scratch.data = malloc(floats * sizeof(float));
    scratch.floats = scratch.data ? floats : 0;
  }
  return scratch.data;
}

static int64_t padded_floats(const Geometry* g) { return g->n * g->hp * g->wp * g->c; }

/* x [N, H, W, C] → x̃ [N, H̃, W̃, C] at `xp`, zero-padded. */
static void pad_images(const float* x, const Geometry* g, float* xp) {
  const int64_t c = g->c, row = g->wp * c;
  for (int64_t n = 0; n < g->n; n++) {
    float* image = xp + n * g->hp * row;
    memset(image, 0, g->pt * row * sizeof(float));
    memset(image + (g->pt + g->h) * row, 0, g->pb * row * sizeof(float));
    for (int64_t i = 0; i < g->h; i++) {
      float* to = image + (i + g->pt) * row;
      memset(to, 0, g->pl * c * sizeof(float));
      memcpy(to + g->pl * c, x + ((n * g->h + i) * g->w) * c, g->w * c * sizeof(float));
      memset(to + (g->pl + g->w) * c, 0, g->pr * c * sizeof(float));
    }
  }
}

/* ---------------------------------------------------------------------------------------- */
/* Forward */

typedef struct {
  Geometry g;
  const float* xp;   /* x̃ */
  const float* wq;   /* the filter packed by 8 output channels: [O/8][kh·kw][C][8] */
  const float* bias; /* [O] or 0 */
  float* y;
} Forward;

/*
 * One block: output pixels q0 … q0 + PIXELS − 1 (flat over n, i, j), whose tap (0, 0) is at
 * `corner` in x̃ (past the last pixel, the last is repeated and not stored), output channels
 * [8·t, 8·(t + V)).
 */
static inline __attribute__((always_inline)) void forward_block(const Forward* f,
                                                               const float* const* corner,
                                                               int64_t q0, int64_t t,
                                                               const int V) {
  const Geometry* g = &f->g;
  const int64_t pixels = g->n * g->ho * g->wo, c = g->c, taps = g->kh * g->kw;
  v8f acc[PIXELS][2];
  for (int v = 0; v < V; v++) {
    const v8f b = f->bias ? load8(f->bias + 8 * (t + v)) : splat(0);
    for (int j = 0; j < PIXELS; j++) acc[j][v] = b;
  }
  for (int64_t a = 0; a < g->kh; a++) {
    for (int64_t b = 0; b < g->kw; b++) {
      const int64_t offset = (a * g->wp + b) * c;
      const float* xs[PIXELS];
      for (int j = 0; j < PIXELS; j++) xs[j] = corner[j] + offset;
      const float* w0 = f->wq + ((t * taps + a * g->kw + b) * c) * 8;
      const float* w1 = w0 + taps * c * 8;
      for (int64_t ci = 0; ci < c; ci++) {
        const v8f f0 = load8(w0 + ci * 8);
        const v8f f1 = V > 1 ? load8(w1 + ci * 8) : f0;
#pragma GCC unroll 6
        for (int j = 0; j < PIXELS; j++) {
          const v8f xv = splat(xs[j][ci]);
          acc[j][0] += xv * f0;
          if (V > 1) acc[j][1] += xv * f1;
        }
      }
    }
  }
  for (int j = 0; j < PIXELS && q0 + j < pixels; j++) {
    float* out = f->y + (q0 + j) * g->o + 8 * t;
    for (int u = 0; u < V; u++) store8(out + 8 * u, acc[j][u]);
  }
}

static void forward_range(void* context, int64_t begin, int64_t end) {
  const Forward* f = context;
  const Geometry* g = &f->g;
  const int64_t tiles = g->o / 8, pixels = g->n * g->ho * g->wo;
  for (int64_t block = begin; block < end; block++) {
    const int64_t q0 = block * PIXELS;
    const float* corner[PIXELS]; /* x̃ at each pixel's tap (0, 0) */
    for (int j = 0; j < PIXELS; j++) {
      const int64_t q = q0 + j < pixels ? q0 + j : pixels - 1;
      const int64_t n = q / (g->ho * g->wo), i = q / g->wo % g->ho, col = q % g->wo;
      corner[j] = f->xp + ((n * g->hp + g->s * i) * g->wp + g->s * col) * g->c;
    }
    int64_t t = 0;
    for (; t + 2 <= tiles; t += 2) forward_block(f, corner, q0, t, 2);
    if (t < tiles) forward_block(f, corner, q0, t, 1);
  }
}

/*
 * The filter of the convolution of geometry g, packed by 8 output channels: wq [O/8][kh·kw][C][8]
 * from w [kh, kw, C, O]; or, `flipped`, the filter W̃ of the input gradient of the convolution
 * whose filter is w [kh, kw, O, C] (W̃[a, b, c, o] = w[kh − 1 − a, kw − 1 − b, o, c]).
 */
static void pack_filter(const float* w, const Geometry* g, int flipped, float* wq) {
  const int64_t taps = g->kh * g->kw, tiles = g->o / 8;
  for (int64_t t = 0; t < tiles; t++) {
    for (int64_t tap = 0; tap < taps; tap++) {
      for (int64_t ci = 0; ci < g->c; ci++) {
        float* to = wq + ((t * taps + tap) * g->c + ci) * 8;
        if (!flipped) {
          memcpy(to, w + (tap * g->c + ci) * g->o + 8 * t, 8 * sizeof(float));
          continue;
        }
        const float* from = w + ((taps - 1 - tap) * g->o + 8 * t) * g->c + ci;
        for (int e = 0; e < 8; e++) to[e] = from[e * g->c];
      }
    }
  }
}

/* y = conv(x, w) + bias as above (w flipped: see pack_filter); returns 0 when out of memory. */
static int conv2d_forward(const float* x, const float* w, int flipped, const float* bias,
                          float* y, Geometry g) {
  pthread_mutex_lock(&scratch.lock);
  float* xp = scratch_reserve(padded_floats(&g) + g.kh * g.kw * g.c * g.o);
  if (xp) {
    float* wq = xp + padded_floats(&g);
    pad_images(x, &g, xp);
    pack_filter(w, &g, flipped, wq);
    Forward f = {g, xp, wq, bias, y};
    parallel_for((g.n * g.ho * g.wo + PIXELS - 1) / PIXELS, forward_range, &f);
  }
  pthread_mutex_unlock(&scratch.lock);
  return xp != 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Filter gradient */

typedef struct {
  Geometry g;
  const float* xp; /* x̃ */
  const float* dy; /* [N, Ho, Wo, O] */
  float* dw;       /* [kh, kw, C, O], zeroed */
  int64_t blocks;  /* channel blocks per tap, of CHANNELS − 1 or CHANNELS channels */
} FilterGradient;

/* ∂w[tap, c0 .. c0 + R, 8·t .. 8·(t + V)] += the sums over images n0 … n1 − 1. */
static inline __attribute__((always_inline)) void filter_block(const FilterGradient* f,
                                                              int64_t n0, int64_t n1, int64_t tap,
                                                              int64_t c0, int64_t t, const int R,
                                                              const int V) {
  const Geometry* g = &f->g;
  float* out = f->dw + (tap * g->c + c0) * g->o + 8 * t;
  v8f acc[CHANNELS][2];
  for (int r = 0; r < R; r++) {
    for (int u = 0; u < V; u++) acc[r][u] = load8(out + r * g->o + 8 * u);
  }
  const int64_t a = tap / g->kw, b = tap % g->kw, c = g->c, o = g->o, step = g->s * c;
  for (int64_t row = n0 * g->ho; row < n1 * g->ho; row++) {
    const int64_t n = row / g->ho, i = row % g->ho;
    const float* xs = f->xp + ((n * g->hp + g->s * i + a) * g->wp + b) * c + c0;
    const float* ds = f->dy + row * g->wo * o + 8 * t;
    for (int64_t j = 0; j < g->wo; j++) {
      const v8f d0 = load8(ds + j * o);
      const v8f d1 = V > 1 ? load8(ds + j * o + 8) : d0;
#pragma GCC unroll 6
      for (int r = 0; r < R; r++) {
        const v8f xv = splat(xs[j * step + r]);
        acc[r][0] += xv * d0;
        if (V > 1) acc[r][1] += xv * d1;
      }
    }
  }
  for (int r = 0; r < R; r++) {
    for (int u = 0; u < V; u++) store8(out + r * g->o + 8 * u, acc[r][u]);
  }
}

/*
 * All output channels of one (tap, channel block) over images n0 … n1 − 1; R = the block's
 * channels.
 */
static inline __attribute__((always_inline)) void filter_unit(const FilterGradient* f,
                                                             int64_t n0, int64_t n1,
                                                             int64_t tap, int64_t c0,
                                                             const int R) {
  const int64_t tiles = f->g.o / 8;
  int64_t t = 0;
  for (; t + 2 <= tiles; t += 2) filter_block(f, n0, n1, tap, c0, t, R, 2);
  if (t < tiles) filter_block(f, n0, n1, tap, c0, t, R, 1);
}

/* Pixels of the images a filter-gradient pass holds in cache at once. */
enum { GROUP_PIXELS = 256 };

static void filter_range(void* context, int64_t begin, int64_t end) {
  const FilterGradient* f = context;
  const int64_t image = f->g.ho * f->g.wo;
  const int64_t group = image >= GROUP_PIXELS ? 1 : GROUP_PIXELS / image;
  for (int64_t n0 = 0; n0 < f->g.n; n0 += group) {
    const int64_t n1 = n0 + group < f->g.n ? n0 + group : f->g.n;
    for (int64_t unit = begin; unit < end; unit++) {
      /* The channels split into blocks of CHANNELS − 1 or CHANNELS: a block of a few channels
       * would leave too few sums in flight to keep the multiply-adds busy. */
      const int64_t tap = unit / f->blocks, block = unit % f->blocks;
      const int64_t c0 = block * f->g.c / f->blocks, c1 = (block + 1) * f->g.c / f->blocks;
      switch (c1 - c0) {
        case 1: filter_unit(f, n0, n1, tap, c0, 1); break;
        case 2: filter_unit(f, n0, n1, tap, c0, 2); break;
        case 3: filter_unit(f, n0, n1, tap, c0, 3); break;
        case 4: filter_unit(f, n0, n1, tap, c0, 4); break;
        case 5: filter_unit(f, n0, n1, tap, c0, 5); break;
        default: filter_unit(f, n0, n1, tap, c0, CHANNELS); break;
      }
    }
  }
}

/* dw = ∂L/∂w as above; returns 0 when out of memory. */
static int conv2d_filter_gradient(const float* x, const float* dy, float* dw, Geometry g) {
  pthread_mutex_lock(&scratch.lock);
  float* xp = scratch_reserve(padded_floats(&g));
  if (xp) {
    pad_images(x, &g, xp);
    memset(dw, 0, g.kh * g.kw * g.c * g.o * sizeof(float));
    const int64_t blocks = (g.c + CHANNELS - 1) / CHANNELS;
    FilterGradient f = {g, xp, dy, dw, blocks};
    parallel_for(g.kh * g.kw * blocks, filter_range, &f);
  }
  pthread_mutex_unlock(&scratch.lock);
  return xp != 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The TensorFlow ops */

#ifndef CONV2D_WITHOUT_OPS

static void* no_state(TF_OpKernelConstruction* ctx) {
  (void)ctx;
  return 0;
}

static void no_destroy(void* state) { (void)state; }

static int fail(TF_Status* status, const char* message) {
  TF_SetStatus(status, TF_INVALID_ARGUMENT, message);
  return 0;
}

/* The stride and padding attributes of DiffusionConv2D and DiffusionConv2DBackpropFilter. */
typedef struct {
  int32_t stride, pads[4]; /* top, bottom, left, right */
} ConvAttrs;

static void* conv_create(TF_OpKernelConstruction* ctx) {
  ConvAttrs* attrs = calloc(1, sizeof(ConvAttrs));
  TF_Status* status = TF_NewStatus();
  const char* names[] = {"stride", "pad_top", "pad_bottom", "pad_left", "pad_right"};
  int32_t* values[] = {&attrs->stride, attrs->pads, attrs->pads + 1, attrs->pads + 2,
                       attrs->pads + 3};
  for (int i = 0; i < 5 && TF_GetCode(status) == TF_OK; i++) {
    TF_OpKernelConstruction_GetAttrInt32(ctx, names[i], values[i], status);
  }
  if (TF_GetCode(status) != TF_OK) TF_OpKernelConstruction_Failure(ctx, status);
  TF_DeleteStatus(status);
  return attrs;
}

static void conv_destroy(void* attrs) { free(attrs); }

/* Checks x [N, H, W, C] and a kh × kw × C × O filter shape against the attributes; fills g. */
static int check(TF_Tensor* x, int64_t kh, int64_t kw, int64_t c, int64_t o,
                 const ConvAttrs* attrs, Geometry* g, TF_Status* status, const char* op) {
  static char message[200];
  const int64_t pads[4] = {attrs->pads[0], attrs->pads[1], attrs->pads[2], attrs->pads[3]};
  if (TF_NumDims(x) != 4 || TF_Dim(x, 3) != c || o % 8 != 0 || o <= 0 ||
      TF_Dim(x, 1) + pads[0] + pads[1] < kh || TF_Dim(x, 2) + pads[2] + pads[3] < kw) {
    snprintf(message, sizeof message,
             "%s: wants x [N, H, W, C], a filter [kh, kw, C, O] no larger than the padded image "
             "and O a multiple of 8",
             op);
    return fail(status, message);
  }
  *g = geometry(TF_Dim(x, 0), TF_Dim(x, 1), TF_Dim(x, 2), c, o, kh, kw, attrs->stride, pads);
  return 1;
}

/* DiffusionConv2D: x, filter, and N (0 or 1) biases [O] → y [N, Ho, Wo, O]. */
static void forward_compute(void* state, TF_OpKernelContext* ctx) {
  TF_Status* status = TF_NewStatus();
  TF_Tensor *x = 0, *w = 0, *bias = 0, *y = 0;
  const int biased = TF_NumInputs(ctx) > 2;
  TF_GetInput(ctx, 0, &x, status);
  if (TF_GetCode(status) == TF_OK) TF_GetInput(ctx, 1, &w, status);
  if (TF_GetCode(status) == TF_OK && biased) TF_GetInput(ctx, 2, &bias, status);
  if (TF_GetCode(status) != TF_OK) goto done;
  Geometry g;
  if (TF_NumDims(w) != 4) {
    fail(status, "DiffusionConv2D: the filter must be [kh, kw, C, O]");
    goto done;
  }
  if (!check(x, TF_Dim(w, 0), TF_Dim(w, 1), TF_Dim(w, 2), TF_Dim(w, 3), state, &g, status,
             "DiffusionConv2D")) {
    goto done;
  }
  if (bias && TF_TensorElementCount(bias) != g.o) {
    fail(status, "DiffusionConv2D: the bias must hold one value per output channel");
    goto done;
  }
  const int64_t dims[4] = {g.n, g.ho, g.wo, g.o};
  y = TF_AllocateOutput(ctx, 0, TF_FLOAT, dims, 4, g.n * g.ho * g.wo * g.o * sizeof(float),
                        status);
  if (TF_GetCode(status) != TF_OK) goto done;
  if (!conv2d_forward(TF_TensorData(x), TF_TensorData(w), 0, bias ? TF_TensorData(bias) : 0,
                      TF_TensorData(y), g)) {
    fail(status, "DiffusionConv2D: out of memory");
  }
done:
  if (TF_GetCode(status) != TF_OK) TF_OpKernelContext_Failure(ctx, status);
  TF_Tensor* tensors[] = {x, w, bias, y};
  for (int i = 0; i < 4; i++) if (tensors[i]) TF_DeleteTensor(tensors[i]);
  TF_DeleteStatus(status);
}

/*
 * DiffusionConv2DBackpropFilter: x [N, H, W, C], dy [N, Ho, Wo, O], attributes kernel_height,
 * kernel_width, stride and pads → ∂w [kh, kw, C, O].
 */
typedef struct {
  ConvAttrs conv;
  int32_t kh, kw;
} FilterAttrs;

static void* filter_create(TF_OpKernelConstruction* ctx) {
  FilterAttrs* attrs = calloc(1, sizeof(FilterAttrs));
  ConvAttrs* conv = conv_create(ctx);
  attrs->conv = *conv;
  free(conv);
  TF_Status* status = TF_NewStatus();
  TF_OpKernelConstruction_GetAttrInt32(ctx, "kernel_height", &attrs->kh, status);
  if (TF_GetCode(status) == TF_OK) {
    TF_OpKernelConstruction_GetAttrInt32(ctx, "kernel_width", &attrs->kw, status);
  }
  if (TF_GetCode(status) != TF_OK) TF_OpKernelConstruction_Failure(ctx, status);
  TF_DeleteStatus(status);
  return attrs;
}

static void filter_compute(void* state, TF_OpKernelContext* ctx) {
  const FilterAttrs* attrs = state;
  TF_Status* status = TF_NewStatus();
  TF_Tensor *x = 0, *dy = 0, *dw = 0;
  TF_GetInput(ctx, 0, &x, status);
  if (TF_GetCode(status) == TF_OK) TF_GetInput(ctx, 1, &dy, status);
  if (TF_GetCode(status) != TF_OK) goto done;
  Geometry g;
  const char* op = "DiffusionConv2DBackpropFilter";
  if (TF_NumDims(x) != 4 || TF_NumDims(dy) != 4) {
    fail(status, "DiffusionConv2DBackpropFilter: x and dy must be [N, H, W, C]");
    goto done;
  }
  if (!check(x, attrs->kh, attrs->kw, TF_Dim(x, 3), TF_Dim(dy, 3), &attrs->conv, &g, status,
             op)) {
    goto done;
  }
  if (TF_Dim(dy, 0) != g.n || TF_Dim(dy, 1) != g.ho || TF_Dim(dy, 2) != g.wo) {
    fail(status, "DiffusionConv2DBackpropFilter: dy must be the convolution's output shape");
    goto done;
  }
  const int64_t dims[4] = {g.kh, g.kw, g.c, g.o};
  dw = TF_AllocateOutput(ctx, 0, TF_FLOAT, dims, 4, g.kh * g.kw * g.c * g.o * sizeof(float),
                         status);
  if (TF_GetCode(status) != TF_OK) goto done;
  if (!conv2d_filter_gradient(TF_TensorData(x), TF_TensorData(dy), TF_TensorData(dw), g)) {
    fail(status, "DiffusionConv2DBackpropFilter: out of memory");
  }
done:
  if (TF_GetCode(status) != TF_OK) TF_OpKernelContext_Failure(ctx, status);
  TF_Tensor* tensors[] = {x, dy, dw};
  for (int i = 0; i < 3; i++) if (tensors[i]) TF_DeleteTensor(tensors[i]);
  TF_DeleteStatus(status);
}

/*
 * DiffusionConv2DGrad: dy [N, H, W, O], x [N, H, W, C], filter [k, k, C, O] → ∂x [N, H, W, C],
 * ∂w [k, k, C, O], ∂b [O]: the whole backward of a layer in one op (C and O multiples of 8).
 */
static void grad_compute(void* state, TF_OpKernelContext* ctx) {
  (void)state;
  TF_Status* status = TF_NewStatus();
  TF_Tensor *dy = 0, *x = 0, *w = 0, *dx = 0, *dw = 0, *db = 0;
  TF_GetInput(ctx, 0, &dy, status);
  if (TF_GetCode(status) == TF_OK) TF_GetInput(ctx, 1, &x, status);
  if (TF_GetCode(status) == TF_OK) TF_GetInput(ctx, 2, &w, status);
  if (TF_GetCode(status) != TF_OK) goto done;
  Geometry g;
  const char* op = "DiffusionConv2DGrad";
  if (TF_NumDims(w) != 4 || TF_Dim(w, 0) != TF_Dim(w, 1) || TF_NumDims(dy) != 4) {
    fail(status, "DiffusionConv2DGrad: wants dy [N, H, W, O] and a filter [k, k, C, O]");
    goto done;
  }
  const int64_t k = TF_Dim(w, 0), p = (k - 1) / 2;
  const ConvAttrs same = {1, {p, p, p, p}};
  if (k % 2 != 1 || !check(x, k, k, TF_Dim(w, 2), TF_Dim(w, 3), &same, &g, status, op)) {
    if (TF_GetCode(status) == TF_OK) fail(status, "DiffusionConv2DGrad: the filter must be odd");
    goto done;
  }
  if (g.c % 8 != 0 || TF_Dim(dy, 0) != g.n || TF_Dim(dy, 1) != g.h || TF_Dim(dy, 2) != g.w ||
      TF_Dim(dy, 3) != g.o) {
    fail(status, "DiffusionConv2DGrad: dy must be [N, H, W, O] of x and the filter, C a multiple of 8");
    goto done;
  }
  const int64_t x_dims[4] = {g.n, g.h, g.w, g.c}, w_dims[4] = {k, k, g.c, g.o};
  const int64_t b_dims[1] = {g.o};
  const int64_t pixels = g.n * g.h * g.w, weights = k * k * g.c * g.o;
  dx = TF_AllocateOutput(ctx, 0, TF_FLOAT, x_dims, 4, pixels * g.c * sizeof(float), status);
  if (TF_GetCode(status) == TF_OK) {
    dw = TF_AllocateOutput(ctx, 1, TF_FLOAT, w_dims, 4, weights * sizeof(float), status);
  }
  if (TF_GetCode(status) == TF_OK) {
    db = TF_AllocateOutput(ctx, 2, TF_FLOAT, b_dims, 1, g.o * sizeof(float), status);
  }
  if (TF_GetCode(status) != TF_OK) goto done;
  const float* d = TF_TensorData(dy);
  const Geometry transposed = same_geometry(g.n, g.h, g.w, g.o, g.c, k);
  if (!conv2d_forward(d, TF_TensorData(w), 1, 0, TF_TensorData(dx), transposed) ||
      !conv2d_filter_gradient(TF_TensorData(x), d, TF_TensorData(dw), g)) {
    fail(status, "DiffusionConv2DGrad: out of memory");
    goto done;
  }
  float* bias = TF_TensorData(db);
  memset(bias, 0, g.o * sizeof(float));
  for (int64_t q = 0; q < pixels; q++) {
    for (int64_t o = 0; o < g.o; o += 8) store8(bias + o, load8(bias + o) + load8(d + q * g.o + o));
  }
done:
  if (TF_GetCode(status) != TF_OK) TF_OpKernelContext_Failure(ctx, status);
  TF_Tensor* tensors[] = {dy, x, w, dx, dw, db};
  for (int i = 0; i < 6; i++) if (tensors[i]) TF_DeleteTensor(tensors[i]);
  TF_DeleteStatus(status);
}

__attribute__((constructor)) static void register_conv2d(void) {
  static const char* const forward_inputs[] = {"x: float", "filter: float", "bias: N * float", 0};
  static const char* const forward_attrs[] = {"N: int >= 0",         "stride: int >= 1",
                                              "pad_top: int >= 0",   "pad_bottom: int >= 0",
                                              "pad_left: int >= 0",  "pad_right: int >= 0", 0};
  static const char* const filter_inputs[] = {"x: float", "dy: float", 0};
  static const char* const filter_attrs[] = {"kernel_height: int >= 1", "kernel_width: int >= 1",
                                             "stride: int >= 1",        "pad_top: int >= 0",
                                             "pad_bottom: int >= 0",    "pad_left: int >= 0",
                                             "pad_right: int >= 0",     0};
  static const char* const grad_inputs[] = {"dy: float", "x: float", "filter: float", 0};
  static const char* const grad_outputs[] = {"dx: float", "dfilter: float", "dbias: float", 0};
  static const char* const no_attrs[] = {0};
  static const char* const outputs[] = {"y: float", 0};
  define_op("DiffusionConv2D", forward_inputs, outputs, forward_attrs, conv_create,
            forward_compute, conv_destroy);
  define_op("DiffusionConv2DBackpropFilter", filter_inputs, outputs, filter_attrs, filter_create,
            filter_compute, conv_destroy);
  define_op("DiffusionConv2DGrad", grad_inputs, grad_outputs, no_attrs, no_state, grad_compute,
            no_destroy);
}

#endif
