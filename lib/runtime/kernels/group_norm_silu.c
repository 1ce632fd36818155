/*
 * SiLU(GroupNorm(x)) and its gradient as two TensorFlow ops, for the native backend; with the
 * attribute silu = false, GroupNorm(x) alone (attention's normalisation), z = y and ∂y = ∂z.
 *
 * Composed of TensorFlow's own ops, the pair at the start of every residual block costs about
 * 47 op dispatches a training step (20 forward, 27 backward), 18 of them over the whole
 * activation; a dispatch costs ~10 µs, one over a [32, 16, 16, 32] activation ~100 µs, mostly
 * handing work to a second thread and back. These two ops do the same arithmetic in two or
 * three passes over the activation each, the samples split over the machine's cores
 * (parallel.h; ∂γ and ∂β are summed in sample order, so the result does not depend on how).
 *
 * Forward, per sample n and channel group g of M = H·W·C/G values (NHWC):
 *
 *   μ = mean(x),  r = 1/√(mean((x − μ)²) + ε),  y = γ_c (x − μ) r + β_c,  z = y σ(y).
 *
 * Backward, with x̂ = (x − μ) r:
 *
 *   ∂y = ∂z σ(y) (1 + y (1 − σ(y))),   ∂β_c = Σ_{n,h,w} ∂y,   ∂γ_c = Σ_{n,h,w} ∂y x̂,
 *   ∂x = r (γ_c ∂y − A − x̂ B),  A = mean_g(γ_c ∂y),  B = mean_g(γ_c ∂y x̂).
 *
 * The ops register themselves with TensorFlow's C API when the library is loaded (a
 * constructor, which also pins the library so that it is never loaded twice), as
 * DiffusionGroupNormSiLU and DiffusionGroupNormSiLUGrad. Only TensorFlow's
 * stable C ABI is used (tf_kernel_api.h), so the library builds with a C compiler and
 * libtensorflow_framework alone.
 */

#define _GNU_SOURCE
#include "tf_kernel_api.h"
#include "parallel.h"
#include "vector8.h"

/* σ(y) of eight values; of n < 8 values through a padded copy. */
static inline v8f sigmoid8(v8f y) { return splat(1.0f) / (splat(1.0f) + exp8(-y)); }

static inline void sigmoid_tail(const float* y, float* s, int64_t n) {
  float buffer[8] = {0};
  memcpy(buffer, y, n * sizeof(float));
  store8(buffer, sigmoid8(load8(buffer)));
  memcpy(s, buffer, n * sizeof(float));
}

/* z = y σ(y) for one row of c channels, y = x a + b. */
static inline void silu_row(const float* x, const float* a, const float* b, float* z, int64_t c) {
  int64_t ch = 0;
  for (; ch + 8 <= c; ch += 8) {
    const v8f y = load8(x + ch) * load8(a + ch) + load8(b + ch);
    store8(z + ch, y * sigmoid8(y));
  }
  if (ch < c) {
    float y[8], s[8];
    for (int64_t i = ch; i < c; i++) y[i - ch] = x[i] * a[i] + b[i];
    sigmoid_tail(y, s, c - ch);
    for (int64_t i = ch; i < c; i++) z[i] = y[i - ch] * s[i - ch];
  }
}

/* ∂y = ∂z σ(y) (1 + y (1 − σ(y))) for one row, y = x a + b. */
static inline void silu_grad_row(const float* x, const float* dz, const float* a, const float* b,
                          float* dy, int64_t c) {
  int64_t ch = 0;
  for (; ch + 8 <= c; ch += 8) {
    const v8f y = load8(x + ch) * load8(a + ch) + load8(b + ch);
    const v8f s = sigmoid8(y);
    store8(dy + ch, load8(dz + ch) * s * (splat(1.0f) + y * (splat(1.0f) - s)));
  }
  if (ch < c) {
    float y[8], s[8];
    for (int64_t i = ch; i < c; i++) y[i - ch] = x[i] * a[i] + b[i];
    sigmoid_tail(y, s, c - ch);
    for (int64_t i = ch; i < c; i++) {
      dy[i] = dz[i] * s[i - ch] * (1.0f + y[i - ch] * (1.0f - s[i - ch]));
    }
  }
}

typedef struct {
  int32_t groups;
  float epsilon;
  unsigned char silu;
} Attrs;

/* z = y = x a + b for one row of c channels (GroupNorm without the SiLU). */
static inline void affine_row(const float* x, const float* a, const float* b, float* z, int64_t c) {
  for (int64_t ch = 0; ch < c; ch++) z[ch] = x[ch] * a[ch] + b[ch];
}

static void* create(TF_OpKernelConstruction* ctx) {
  Attrs* attrs = calloc(1, sizeof(Attrs));
  TF_Status* status = TF_NewStatus();
  TF_OpKernelConstruction_GetAttrInt32(ctx, "groups", &attrs->groups, status);
  if (TF_GetCode(status) == TF_OK) {
    TF_OpKernelConstruction_GetAttrFloat(ctx, "epsilon", &attrs->epsilon, status);
  }
  if (TF_GetCode(status) == TF_OK) {
    TF_OpKernelConstruction_GetAttrBool(ctx, "silu", &attrs->silu, status);
  }
  if (TF_GetCode(status) != TF_OK) TF_OpKernelConstruction_Failure(ctx, status);
  TF_DeleteStatus(status);
  return attrs;
}

static void destroy(void* attrs) { free(attrs); }

/* Sizes of an NHWC input, checked against γ, β and the group count. */
typedef struct {
  int64_t n, hw, c, groups, per_group;
} Shape;

static int read_inputs(TF_OpKernelContext* ctx, const Attrs* attrs, int count, TF_Tensor** in,
                       Shape* shape, TF_Status* status) {
  for (int i = 0; i < count; i++) {
    TF_GetInput(ctx, i, &in[i], status);
    if (TF_GetCode(status) != TF_OK) return 0;
  }
  /* The activation is input 0 (forward) or 1 (gradient: dz, x, ...); γ follows x. */
  TF_Tensor* x = in[count == 3 ? 0 : 1];
  TF_Tensor* gamma = in[count == 3 ? 1 : 2];
  char message[200];
  if (TF_NumDims(x) != 4) {
    snprintf(message, sizeof message, "GroupNormSiLU needs NHWC input of rank 4, got rank %d",
             TF_NumDims(x));
  } else {
    shape->n = TF_Dim(x, 0);
    shape->hw = TF_Dim(x, 1) * TF_Dim(x, 2);
    shape->c = TF_Dim(x, 3);
    shape->groups = attrs->groups;
    shape->per_group = shape->groups > 0 ? shape->c / shape->groups : 0;
    if (shape->groups < 1 || shape->c % shape->groups != 0) {
      snprintf(message, sizeof message, "GroupNormSiLU: %lld channels do not split into %d groups",
               (long long)shape->c, attrs->groups);
    } else if (TF_TensorElementCount(gamma) != shape->c) {
      snprintf(message, sizeof message, "GroupNormSiLU: gamma has %lld values for %lld channels",
               (long long)TF_TensorElementCount(gamma), (long long)shape->c);
    } else {
      return 1;
    }
  }
  TF_SetStatus(status, TF_INVALID_ARGUMENT, message);
  return 0;
}

static TF_Tensor* output(TF_OpKernelContext* ctx, int index, const int64_t* dims, int rank,
                         int64_t count, TF_Status* status) {
  return TF_AllocateOutput(ctx, index, TF_FLOAT, dims, rank, (size_t)count * sizeof(float),
                           status);
}

/* The forward's inputs and outputs, for forward_samples. */
typedef struct {
  const Attrs* attrs;
  Shape s;
  const float *x, *gamma, *beta;
  float *z, *mean, *rstd;
} ForwardPass;

/* The forward for samples [begin, end). */
static void forward_samples(void* context, int64_t begin, int64_t end) {
  const ForwardPass* f = context;
  const Attrs* attrs = f->attrs;
  const Shape s = f->s;
  const float *x = f->x, *gamma = f->gamma, *beta = f->beta;
  float *z = f->z, *mean = f->mean, *rstd = f->rstd;
  const int64_t c = s.c, hw = s.hw;
  float* sums = malloc(3 * c * sizeof(float));
  float *a = sums + c, *b = sums + 2 * c;
  const double m = (double)(hw * s.per_group);
  for (int64_t n = begin; n < end; n++) {
    const float* xn = x + n * hw * c;
    float* zn = z + n * hw * c;
    /* μ per group, from per-channel sums. */
    memset(sums, 0, c * sizeof(float));
    for (int64_t p = 0; p < hw; p++)
      for (int64_t ch = 0; ch < c; ch++) sums[ch] += xn[p * c + ch];
    for (int64_t g = 0; g < s.groups; g++) {
      double total = 0;
      for (int64_t ch = g * s.per_group; ch < (g + 1) * s.per_group; ch++) total += sums[ch];
      mean[n * s.groups + g] = (float)(total / m);
      for (int64_t ch = g * s.per_group; ch < (g + 1) * s.per_group; ch++) {
        a[ch] = mean[n * s.groups + g];
      }
    }
    /* The variance from the centred values, as PyTorch computes it. */
    memset(sums, 0, c * sizeof(float));
    for (int64_t p = 0; p < hw; p++)
      for (int64_t ch = 0; ch < c; ch++) {
        const float d = xn[p * c + ch] - a[ch];
        sums[ch] += d * d;
      }
    for (int64_t g = 0; g < s.groups; g++) {
      double total = 0;
      for (int64_t ch = g * s.per_group; ch < (g + 1) * s.per_group; ch++) total += sums[ch];
      const float mu = mean[n * s.groups + g];
      const float r = (float)(1.0 / sqrt(total / m + attrs->epsilon));
      rstd[n * s.groups + g] = r;
      for (int64_t ch = g * s.per_group; ch < (g + 1) * s.per_group; ch++) {
        a[ch] = gamma[ch] * r;
        b[ch] = beta[ch] - mu * a[ch];
      }
    }
    if (attrs->silu) {
      for (int64_t p = 0; p < hw; p++) silu_row(xn + p * c, a, b, zn + p * c, c);
    } else {
      for (int64_t p = 0; p < hw; p++) affine_row(xn + p * c, a, b, zn + p * c, c);
    }
  }
  free(sums);
}

/* Inputs x, γ, β; outputs z (like x), μ and r ([N, G]). */
static void forward(void* kernel, TF_OpKernelContext* ctx) {
  const Attrs* attrs = kernel;
  TF_Status* status = TF_NewStatus();
  TF_Tensor* in[3] = {0};
  TF_Tensor* out[3] = {0};
  Shape s;
  if (!read_inputs(ctx, attrs, 3, in, &s, status)) goto done;
  const int64_t dims[4] = {TF_Dim(in[0], 0), TF_Dim(in[0], 1), TF_Dim(in[0], 2), s.c};
  const int64_t stat_dims[2] = {s.n, s.groups};
  out[0] = output(ctx, 0, dims, 4, s.n * s.hw * s.c, status);
  if (out[0]) out[1] = output(ctx, 1, stat_dims, 2, s.n * s.groups, status);
  if (out[1]) out[2] = output(ctx, 2, stat_dims, 2, s.n * s.groups, status);
  if (TF_GetCode(status) != TF_OK) goto done;

  ForwardPass pass = {attrs,          s,
                      TF_TensorData(in[0]), TF_TensorData(in[1]),
                      TF_TensorData(in[2]), TF_TensorData(out[0]),
                      TF_TensorData(out[1]), TF_TensorData(out[2])};
  parallel_for(s.n, forward_samples, &pass);
done:
  if (TF_GetCode(status) != TF_OK) TF_OpKernelContext_Failure(ctx, status);
  for (int i = 0; i < 3; i++) {
    if (in[i]) TF_DeleteTensor(in[i]);
    if (out[i]) TF_DeleteTensor(out[i]);
  }
  TF_DeleteStatus(status);
}

/* The backward's inputs and outputs, for backward_samples: ∂x, and ∂γ, ∂β per sample. */
typedef struct {
  Shape s;
  const float *dz, *x, *gamma, *beta, *mean, *rstd;
  float* dx;
  double* totals; /* [N][2][C]: Σ ∂y x̂ and Σ ∂y of each sample */
  int silu;
} BackwardPass;

/* The backward for samples [begin, end). */
static void backward_samples(void* context, int64_t begin, int64_t end) {
  const BackwardPass* pass = context;
  const Shape s = pass->s;
  const float *dz = pass->dz, *x = pass->x, *gamma = pass->gamma, *beta = pass->beta;
  const float *mean = pass->mean, *rstd = pass->rstd;
  float* dx = pass->dx;
  double* totals = pass->totals;
  const int silu = pass->silu;
  const int64_t c = s.c, hw = s.hw;
  /* Per-channel coefficients and sums. */
  float* f = malloc(7 * c * sizeof(float));
  float *a = f, *b = f + c, *r = f + 2 * c, *mr = f + 3 * c, *sdy = f + 4 * c, *sdyx = f + 5 * c,
        *k3 = f + 6 * c;
  const double m = (double)(hw * s.per_group);
  for (int64_t n = begin; n < end; n++) {
    const float* xn = x + n * hw * c;
    const float* dzn = dz + n * hw * c;
    float* dxn = dx + n * hw * c;
    for (int64_t ch = 0; ch < c; ch++) {
      const int64_t g = n * s.groups + ch / s.per_group;
      r[ch] = rstd[g];
      mr[ch] = mean[g] * rstd[g];
      a[ch] = gamma[ch] * rstd[g];
      b[ch] = beta[ch] - mean[g] * a[ch];
    }
    memset(sdy, 0, 2 * c * sizeof(float));
    /* ∂y (kept in ∂x for the second pass) and its sums Σ∂y, Σ∂y·x̂ per channel. */
    for (int64_t p = 0; p < hw; p++) {
      const int64_t row = p * c;
      if (silu) silu_grad_row(xn + row, dzn + row, a, b, dxn + row, c);
      else memcpy(dxn + row, dzn + row, c * sizeof(float));
      for (int64_t ch = 0; ch < c; ch++) {
        sdy[ch] += dxn[row + ch];
        sdyx[ch] += dxn[row + ch] * (xn[row + ch] * r[ch] - mr[ch]);
      }
    }
    /* ∂x = r γ ∂y − r² B x + (r² B μ − r A), per channel: a, b, k3 reused as the coefficients. */
    for (int64_t g = 0; g < s.groups; g++) {
      double sum_a = 0, sum_b = 0;
      for (int64_t ch = g * s.per_group; ch < (g + 1) * s.per_group; ch++) {
        sum_a += (double)gamma[ch] * sdy[ch];
        sum_b += (double)gamma[ch] * sdyx[ch];
      }
      const double rg = rstd[n * s.groups + g], mu = mean[n * s.groups + g];
      const double A = sum_a / m, B = sum_b / m;
      for (int64_t ch = g * s.per_group; ch < (g + 1) * s.per_group; ch++) {
        a[ch] = (float)(rg * gamma[ch]);
        b[ch] = (float)(-rg * rg * B);
        k3[ch] = (float)(rg * rg * B * mu - rg * A);
      }
    }
    for (int64_t ch = 0; ch < c; ch++) {
      totals[2 * c * n + ch] = sdyx[ch];
      totals[2 * c * n + c + ch] = sdy[ch];
    }
    for (int64_t p = 0; p < hw; p++)
      for (int64_t ch = 0; ch < c; ch++) {
        const int64_t i = p * c + ch;
        dxn[i] = dxn[i] * a[ch] + xn[i] * b[ch] + k3[ch];
      }
  }
  free(f);
}

/* Inputs ∂z, x, γ, β, μ, r; outputs ∂x, ∂γ, ∂β. */
static void backward(void* kernel, TF_OpKernelContext* ctx) {
  const Attrs* attrs = kernel;
  TF_Status* status = TF_NewStatus();
  TF_Tensor* in[6] = {0};
  TF_Tensor* out[3] = {0};
  Shape s;
  if (!read_inputs(ctx, attrs, 6, in, &s, status)) goto done;
  const int64_t dims[4] = {TF_Dim(in[1], 0), TF_Dim(in[1], 1), TF_Dim(in[1], 2), s.c};
  const int64_t channel_dims[1] = {s.c};
  out[0] = output(ctx, 0, dims, 4, s.n * s.hw * s.c, status);
  if (out[0]) out[1] = output(ctx, 1, channel_dims, 1, s.c, status);
  if (out[1]) out[2] = output(ctx, 2, channel_dims, 1, s.c, status);
  if (TF_GetCode(status) != TF_OK) goto done;

  const int64_t c = s.c;
  /* Each sample's share of ∂γ, ∂β, summed in sample order after: the same sums on any number
   * of threads. */
  double* totals = malloc(2 * c * s.n * sizeof(double));
  if (!totals) {
    TF_SetStatus(status, TF_INVALID_ARGUMENT, "GroupNormSiLUGrad: out of memory");
    goto done;
  }
  BackwardPass pass = {s, TF_TensorData(in[0]), TF_TensorData(in[1]), TF_TensorData(in[2]),
                       TF_TensorData(in[3]), TF_TensorData(in[4]), TF_TensorData(in[5]),
                       TF_TensorData(out[0]), totals, attrs->silu};
  parallel_for(s.n, backward_samples, &pass);
  float* dgamma = TF_TensorData(out[1]);
  float* dbeta = TF_TensorData(out[2]);
  for (int64_t ch = 0; ch < c; ch++) {
    double sum_gamma = 0, sum_beta = 0;
    for (int64_t n = 0; n < s.n; n++) {
      sum_gamma += totals[2 * c * n + ch];
      sum_beta += totals[2 * c * n + c + ch];
    }
    dgamma[ch] = (float)sum_gamma;
    dbeta[ch] = (float)sum_beta;
  }
  free(totals);
done:
  if (TF_GetCode(status) != TF_OK) TF_OpKernelContext_Failure(ctx, status);
  for (int i = 0; i < 6; i++) {
    if (in[i]) TF_DeleteTensor(in[i]);
    if (i < 3 && out[i]) TF_DeleteTensor(out[i]);
  }
  TF_DeleteStatus(status);
}

__attribute__((constructor)) static void register_ops(void) {
  /* TensorFlow aborts on an op registered twice, which a second load after an unload would do
   * (Deno closes a library its program no longer holds): pin this one in the process. */
  Dl_info self;
  if (dladdr((void*)register_ops, &self) && self.dli_fname) {
    dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  }
  static const char* const forward_inputs[] = {"x: float", "gamma: float", "beta: float", 0};
  static const char* const forward_outputs[] = {"z: float", "mean: float", "rstd: float", 0};
  static const char* const backward_inputs[] = {"dz: float",    "x: float",    "gamma: float",
                                                "beta: float",  "mean: float", "rstd: float", 0};
  static const char* const backward_outputs[] = {"dx: float", "dgamma: float", "dbeta: float", 0};
  static const char* const attrs[] = {"groups: int >= 1", "epsilon: float", "silu: bool = true", 0};
  define_op("DiffusionGroupNormSiLU", forward_inputs, forward_outputs, attrs, create, forward,
            destroy);
  define_op("DiffusionGroupNormSiLUGrad", backward_inputs, backward_outputs, attrs, create,
            backward, destroy);
}
