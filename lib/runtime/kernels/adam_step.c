/*
 * One optimiser step of a training run as one TensorFlow op, for the native backend: the
 * gradient norm, clipping, Adam (or AdamW) and the EMA of the weights, over every parameter
 * tensor at once.
 *
 * Composed of TensorFlow's ops (lib/training/optim.ts), the step costs about 570 dispatches for
 * the book's U-Net (182 parameter tensors): each gradient and parameter reshaped to a vector and
 * concatenated, a dozen element-wise ops over the 1.1 M values, and the new values split and
 * reshaped back. This op reads the tensors where they are and writes the new ones in one pass:
 *
 *   ‖g‖ = √(Σ g²),  c = C/(‖g‖ + 10⁻⁶) when ‖g‖ > C (C < 0: no clipping),  g ← c g  (+ λθ, Adam),
 *   m ← β₁ m + (1 − β₁) g,  v ← β₂ v + (1 − β₂) g²,
 *   θ ← θ − η (m/c₁)/(√(v/c₂) + ε)  (− η λ θ for AdamW),   θ̄ ← d θ̄ + (1 − d) θ,
 *
 * with every scalar coming in as the float32 the composite multiplies by (`hyper`), and each
 * product and sum rounded to float32 in the composite's order (no fused multiply-add), so that
 * the result is the composite's to the last bit, but for ‖g‖, summed here in double, and the
 * clipping factor, from C as a float32 (the composite divides the double C). The op does
 * not decide whether the step is taken: the caller reads ‖g‖ and keeps or drops the outputs.
 * The update is element-wise, so its chunks run on the machine's cores (parallel.h) with the
 * same result.
 *
 * Inputs: grads (N tensors), params (N tensors of the same shapes), m, v, average (flat, Σ sizes),
 * hyper (the 14 scalars of `enum Hyper`). Outputs: new params (N), new m, v, average, and ‖g‖.
 */
#pragma GCC optimize("fp-contract=off")
#define _GNU_SOURCE
#include "tf_kernel_api.h"
#include "parallel.h"

enum Hyper {
  BETA1, ONE_MINUS_BETA1, BETA2, ONE_MINUS_BETA2, CORRECTION1, CORRECTION2, EPSILON,
  LEARNING_RATE, WEIGHT_DECAY, LR_TIMES_DECAY, DECOUPLED, EMA_DECAY, ONE_MINUS_EMA_DECAY,
  CLIP_NORM, HYPER_COUNT
};

typedef struct {
  int32_t n;
} Attrs;

static void* create(TF_OpKernelConstruction* ctx) {
  Attrs* attrs = calloc(1, sizeof(Attrs));
  TF_Status* status = TF_NewStatus();
  TF_OpKernelConstruction_GetAttrInt32(ctx, "N", &attrs->n, status);
  if (TF_GetCode(status) != TF_OK) TF_OpKernelConstruction_Failure(ctx, status);
  TF_DeleteStatus(status);
  return attrs;
}

static void destroy(void* attrs) { free(attrs); }

static int fail(TF_Status* status, const char* message) {
  TF_SetStatus(status, TF_INVALID_ARGUMENT, message);
  return 0;
}

/* Values a thread updates at a time: the update splits the flat parameter vector into these. */
enum { CHUNK = 1 << 14 };

/* What update_chunks reads: the op's tensors, each parameter's offset in the flat vectors. */
typedef struct {
  int n;
  TF_Tensor** in;
  TF_Tensor** out;
  const int64_t* offsets; /* [n + 1] */
  const float* h;
  float c;
  int clip, coupled, decoupled;
} Update;

/* The update of the module comment for the values of chunks [begin, end). */
static void update_chunks(void* context, int64_t begin, int64_t end) {
  const Update* u = context;
  const int n = u->n;
  const float* h = u->h;
  const int64_t first = begin * CHUNK, last = end * CHUNK;
  const float *m0 = TF_TensorData(u->in[2 * n]), *v0 = TF_TensorData(u->in[2 * n + 1]);
  const float* a0 = TF_TensorData(u->in[2 * n + 2]);
  float *m1 = TF_TensorData(u->out[n]), *v1 = TF_TensorData(u->out[n + 1]);
  float* a1 = TF_TensorData(u->out[n + 2]);
  for (int i = 0; i < n; i++) {
    const int64_t from = u->offsets[i] > first ? u->offsets[i] : first;
    const int64_t to = u->offsets[i + 1] < last ? u->offsets[i + 1] : last;
    if (from >= to) continue;
    const float* g = TF_TensorData(u->in[i]);
    const float* theta = TF_TensorData(u->in[n + i]);
    float* next = TF_TensorData(u->out[i]);
    for (int64_t at = from; at < to; at++) {
      const int64_t j = at - u->offsets[i];
      float gj = u->clip ? g[j] * u->c : g[j];
      if (u->coupled) gj = gj + theta[j] * h[WEIGHT_DECAY];
      const float mj = m0[at] * h[BETA1] + gj * h[ONE_MINUS_BETA1];
      const float vj = v0[at] * h[BETA2] + (gj * gj) * h[ONE_MINUS_BETA2];
      const float step = ((mj / h[CORRECTION1]) / (sqrtf(vj / h[CORRECTION2]) + h[EPSILON])) *
                         h[LEARNING_RATE];
      float t = theta[j] - step;
      if (u->decoupled) t = t - theta[j] * h[LR_TIMES_DECAY];
      m1[at] = mj;
      v1[at] = vj;
      next[j] = t;
      a1[at] = a0[at] * h[EMA_DECAY] + t * h[ONE_MINUS_EMA_DECAY];
    }
  }
}

static void compute(void* kernel, TF_OpKernelContext* ctx) {
  const int n = ((Attrs*)kernel)->n;
  TF_Status* status = TF_NewStatus();
  TF_Tensor** in = calloc(2 * n + 4, sizeof(TF_Tensor*));
  TF_Tensor** out = calloc(n + 4, sizeof(TF_Tensor*));
  int64_t total = 0;
  for (int i = 0; i < 2 * n + 4; i++) {
    TF_GetInput(ctx, i, &in[i], status);
    if (TF_GetCode(status) != TF_OK) goto done;
  }
  for (int i = 0; i < n; i++) {
    if (TF_TensorElementCount(in[i]) != TF_TensorElementCount(in[n + i])) {
      fail(status, "AdamStep: a gradient and its parameter differ in size");
      goto done;
    }
    total += TF_TensorElementCount(in[i]);
  }
  TF_Tensor *m = in[2 * n], *v = in[2 * n + 1], *average = in[2 * n + 2], *hyper = in[2 * n + 3];
  if (TF_TensorElementCount(m) != total || TF_TensorElementCount(v) != total ||
      TF_TensorElementCount(average) != total) {
    fail(status, "AdamStep: m, v and the average must hold as many values as the parameters");
    goto done;
  }
  if (TF_TensorElementCount(hyper) != HYPER_COUNT) {
    fail(status, "AdamStep: hyper must hold 14 scalars");
    goto done;
  }
  const float* h = TF_TensorData(hyper);
  for (int i = 0; i < n; i++) {
    const TF_Tensor* like = in[n + i];
    int64_t dims[8];
    const int rank = TF_NumDims(like);
    if (rank > 8) {
      fail(status, "AdamStep: a parameter of rank above 8");
      goto done;
    }
    for (int d = 0; d < rank; d++) dims[d] = TF_Dim(like, d);
    out[i] = TF_AllocateOutput(ctx, i, TF_FLOAT, dims, rank,
                               TF_TensorElementCount(like) * sizeof(float), status);
    if (TF_GetCode(status) != TF_OK) goto done;
  }
  const int64_t flat[1] = {total};
  for (int k = 0; k < 3; k++) {
    out[n + k] = TF_AllocateOutput(ctx, n + k, TF_FLOAT, flat, 1, total * sizeof(float), status);
    if (TF_GetCode(status) != TF_OK) goto done;
  }
  out[n + 3] = TF_AllocateOutput(ctx, n + 3, TF_FLOAT, 0, 0, sizeof(float), status);
  if (TF_GetCode(status) != TF_OK) goto done;

  double squares = 0;
  for (int i = 0; i < n; i++) {
    const float* g = TF_TensorData(in[i]);
    for (int64_t j = 0, size = TF_TensorElementCount(in[i]); j < size; j++) {
      squares += (double)g[j] * g[j];
    }
  }
  const float norm = sqrtf((float)squares);
  *(float*)TF_TensorData(out[n + 3]) = norm;
  /* The composite's c: C/(‖g‖ + 10⁻⁶) in double, multiplied in as a float32. */
  const int clip = h[CLIP_NORM] >= 0 && norm > h[CLIP_NORM]; /* C < 0: no clipping */
  const float c = clip ? (float)((double)h[CLIP_NORM] / ((double)norm + 1e-6)) : 1.0f;
  int64_t* offsets = malloc((n + 1) * sizeof(int64_t));
  if (!offsets) {
    fail(status, "AdamStep: out of memory");
    goto done;
  }
  offsets[0] = 0;
  for (int i = 0; i < n; i++) offsets[i + 1] = offsets[i] + TF_TensorElementCount(in[i]);
  Update update = {n, in, out, offsets, h, c, clip, h[DECOUPLED] == 0 && h[WEIGHT_DECAY] > 0,
                   h[DECOUPLED] != 0 && h[WEIGHT_DECAY] > 0};
  parallel_for((total + CHUNK - 1) / CHUNK, update_chunks, &update);
  free(offsets);
done:
  if (TF_GetCode(status) != TF_OK) TF_OpKernelContext_Failure(ctx, status);
  for (int i = 0; i < 2 * n + 4; i++) if (in[i]) TF_DeleteTensor(in[i]);
  for (int i = 0; i < n + 4; i++) if (out[i]) TF_DeleteTensor(out[i]);
  free(in);
  free(out);
  TF_DeleteStatus(status);
}

__attribute__((constructor)) static void register_adam_step(void) {
  static const char* const inputs[] = {"grads: N * float", "params: N * float", "m: float",
                                       "v: float", "average: float", "hyper: float", 0};
  static const char* const outputs[] = {"new_params: N * float", "new_m: float", "new_v: float",
                                        "new_average: float", "norm: float", 0};
  static const char* const attrs[] = {"N: int >= 1", 0};
  define_op("DiffusionAdamStep", inputs, outputs, attrs, create, compute, destroy);
}
