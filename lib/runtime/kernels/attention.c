/*
 * The core of multi-head attention and its gradient as two TensorFlow ops, for the native
 * backend. Per sample n and head h, with d = C/heads and queries, keys, values the head's d
 * columns of q [N·L_q, C], k and v [N·L_k, C]:
 *
 *   S = Q Kᵀ/√d,   P = softmax(S) (over the keys, the row maximum subtracted),   O = P V;
 *
 *   ∂V = Pᵀ ∂O,   ∂P = ∂O Vᵀ,   ∂S = P ⊙ (∂P − rowsum(P ⊙ ∂P)),
 *   ∂Q = ∂S K/√d,   ∂K = ∂Sᵀ Q/√d.
 *
 * Composed of TensorFlow's ops, the core is a dozen dispatches forward (three head splits of
 * a reshape, a transpose and a reshape each, two batched products, the scale, the softmax, the
 * merge) and about twice that backward, on matrices of 16 × 16 at the U-Net's 4 × 4 level; here
 * it is one op each way. The forward also returns P, which the backward takes. Work is split
 * over the machine's cores by (sample, head) (parallel.h); each writes its own rows.
 */
#define _GNU_SOURCE
#include "tf_kernel_api.h"
#include "parallel.h"
#include "vector8.h"

typedef struct {
  int64_t n, lq, lk, c, heads, d;
  float scale;
  const float *q, *k, *v, *p, *dout;
  float *out, *probs, *dq, *dk, *dv;
} Attention;

/* xᵀ [d][rows] of the d columns of `rows` rows of x (row stride c): the sums over the head's
 * columns then run along contiguous rows, as vectors. */
static void transpose_head(const float* x, int64_t rows, int64_t c, int64_t d, float* xt) {
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t e = 0; e < d; e++) xt[e * rows + r] = x[r * c + e];
  }
}

/* O and P for units [begin, end) of (sample, head). */
static void forward_units(void* context, int64_t begin, int64_t end) {
  const Attention* a = context;
  const int64_t c = a->c, d = a->d, lk = a->lk;
  float* kt = malloc(d * lk * sizeof(float));
  for (int64_t unit = begin; unit < end; unit++) {
    const int64_t n = unit / a->heads, h = unit % a->heads;
    const float* q = a->q + n * a->lq * c + h * d;
    const float* v = a->v + n * lk * c + h * d;
    float* out = a->out + n * a->lq * c + h * d;
    float* p = a->probs + unit * a->lq * lk;
    transpose_head(a->k + n * lk * c + h * d, lk, c, d, kt);
    for (int64_t i = 0; i < a->lq; i++) {
      float* row = p + i * lk;
      for (int64_t j = 0; j < lk; j++) row[j] = 0;
      for (int64_t e = 0; e < d; e++) {
        const float qe = q[i * c + e] * a->scale;
        for (int64_t j = 0; j < lk; j++) row[j] += qe * kt[e * lk + j];
      }
      float top = -INFINITY;
      for (int64_t j = 0; j < lk; j++) top = row[j] > top ? row[j] : top;
      for (int64_t j = 0; j < lk; j++) row[j] -= top;
      exp_in_place(row, lk);
      float sum = 0;
      for (int64_t j = 0; j < lk; j++) sum += row[j];
      const float inverse = 1.0f / sum;
      for (int64_t j = 0; j < lk; j++) row[j] *= inverse;
      float* o = out + i * c;
      for (int64_t e = 0; e < d; e++) o[e] = 0;
      for (int64_t j = 0; j < lk; j++) {
        const float pj = row[j];
        for (int64_t e = 0; e < d; e++) o[e] += pj * v[j * c + e];
      }
    }
  }
  free(kt);
}

/* ∂Q, ∂K, ∂V for units [begin, end). */
static void backward_units(void* context, int64_t begin, int64_t end) {
  const Attention* a = context;
  const int64_t c = a->c, d = a->d, lk = a->lk;
  float* ds = malloc((lk + d * lk) * sizeof(float));
  float* vt = ds + lk;
  for (int64_t unit = begin; unit < end; unit++) {
    const int64_t n = unit / a->heads, h = unit % a->heads;
    const int64_t qs = n * a->lq * c + h * d, ks = n * lk * c + h * d;
    const float *q = a->q + qs, *k = a->k + ks, *dout = a->dout + qs;
    float *dq = a->dq + qs, *dk = a->dk + ks, *dv = a->dv + ks;
    const float* p = a->p + unit * a->lq * lk;
    transpose_head(a->v + ks, lk, c, d, vt);
    for (int64_t j = 0; j < lk; j++) {
      for (int64_t e = 0; e < d; e++) dk[j * c + e] = dv[j * c + e] = 0;
    }
    for (int64_t i = 0; i < a->lq; i++) {
      const float* row = p + i * lk;
      const float* go = dout + i * c;
      for (int64_t j = 0; j < lk; j++) ds[j] = 0; /* ∂P_ij = ∂O_i · V_j */
      for (int64_t e = 0; e < d; e++) {
        for (int64_t j = 0; j < lk; j++) ds[j] += go[e] * vt[e * lk + j];
      }
      float weighted = 0; /* Σ_j P_ij ∂P_ij */
      for (int64_t j = 0; j < lk; j++) weighted += row[j] * ds[j];
      float* gq = dq + i * c;
      for (int64_t e = 0; e < d; e++) gq[e] = 0;
      for (int64_t j = 0; j < lk; j++) {
        const float pj = row[j], g = pj * (ds[j] - weighted) * a->scale;
        for (int64_t e = 0; e < d; e++) {
          dv[j * c + e] += pj * go[e];
          gq[e] += g * k[j * c + e];
          dk[j * c + e] += g * q[i * c + e];
        }
      }
    }
  }
  free(ds);
}

typedef struct {
  int32_t heads, batch;
} Attrs;

static void* create(TF_OpKernelConstruction* ctx) {
  Attrs* attrs = calloc(1, sizeof(Attrs));
  TF_Status* status = TF_NewStatus();
  TF_OpKernelConstruction_GetAttrInt32(ctx, "heads", &attrs->heads, status);
  if (TF_GetCode(status) == TF_OK) {
    TF_OpKernelConstruction_GetAttrInt32(ctx, "batch", &attrs->batch, status);
  }
  if (TF_GetCode(status) != TF_OK) TF_OpKernelConstruction_Failure(ctx, status);
  TF_DeleteStatus(status);
  return attrs;
}

static void destroy(void* attrs) { free(attrs); }

/* Reads the `count` inputs (q, k, v first) and fills the geometry; 0 with `status` set if bad. */
static int read_inputs(TF_OpKernelContext* ctx, const Attrs* attrs, int count, TF_Tensor** in,
                       Attention* a, TF_Status* status) {
  for (int i = 0; i < count; i++) {
    TF_GetInput(ctx, i, &in[i], status);
    if (TF_GetCode(status) != TF_OK) return 0;
  }
  TF_Tensor *q = in[0], *k = in[1], *v = in[2];
  const int64_t n = attrs->batch;
  if (TF_NumDims(q) != 2 || TF_NumDims(k) != 2 || TF_NumDims(v) != 2 || n < 1 ||
      attrs->heads < 1 || TF_Dim(q, 1) % attrs->heads != 0 || TF_Dim(q, 0) % n != 0 ||
      TF_Dim(k, 0) % n != 0 || TF_Dim(k, 1) != TF_Dim(q, 1) || TF_Dim(v, 0) != TF_Dim(k, 0) ||
      TF_Dim(v, 1) != TF_Dim(q, 1)) {
    TF_SetStatus(status, TF_INVALID_ARGUMENT,
                 "DiffusionAttention: wants q [N·Lq, C], k and v [N·Lk, C], C divisible by heads");
    return 0;
  }
  *a = (Attention){.n = n,
                   .lq = TF_Dim(q, 0) / n,
                   .lk = TF_Dim(k, 0) / n,
                   .c = TF_Dim(q, 1),
                   .heads = attrs->heads,
                   .d = TF_Dim(q, 1) / attrs->heads,
                   .q = TF_TensorData(q),
                   .k = TF_TensorData(k),
                   .v = TF_TensorData(v)};
  a->scale = (float)(1.0 / sqrt((double)a->d));
  return 1;
}

/* Inputs q, k, v; outputs O [N·Lq, C] and P [N, heads, Lq, Lk]. */
static void forward(void* kernel, TF_OpKernelContext* ctx) {
  const Attrs* attrs = kernel;
  TF_Status* status = TF_NewStatus();
  TF_Tensor* in[3] = {0};
  TF_Tensor* out[2] = {0};
  Attention a;
  if (!read_inputs(ctx, attrs, 3, in, &a, status)) goto done;
  const int64_t out_dims[2] = {a.n * a.lq, a.c}, p_dims[4] = {a.n, a.heads, a.lq, a.lk};
  out[0] = TF_AllocateOutput(ctx, 0, TF_FLOAT, out_dims, 2, a.n * a.lq * a.c * sizeof(float),
                             status);
  if (TF_GetCode(status) == TF_OK) {
    out[1] = TF_AllocateOutput(ctx, 1, TF_FLOAT, p_dims, 4,
                               a.n * a.heads * a.lq * a.lk * sizeof(float), status);
  }
  if (TF_GetCode(status) != TF_OK) goto done;
  a.out = TF_TensorData(out[0]);
  a.probs = TF_TensorData(out[1]);
  parallel_for(a.n * a.heads, forward_units, &a);
done:
  if (TF_GetCode(status) != TF_OK) TF_OpKernelContext_Failure(ctx, status);
  for (int i = 0; i < 3; i++) if (in[i]) TF_DeleteTensor(in[i]);
  for (int i = 0; i < 2; i++) if (out[i]) TF_DeleteTensor(out[i]);
  TF_DeleteStatus(status);
}

/* Inputs q, k, v, P, ∂O; outputs ∂q, ∂k, ∂v. */
static void backward(void* kernel, TF_OpKernelContext* ctx) {
  const Attrs* attrs = kernel;
  TF_Status* status = TF_NewStatus();
  TF_Tensor* in[5] = {0};
  TF_Tensor* out[3] = {0};
  Attention a;
  if (!read_inputs(ctx, attrs, 5, in, &a, status)) goto done;
  if (TF_TensorElementCount(in[3]) != a.n * a.heads * a.lq * a.lk ||
      TF_TensorElementCount(in[4]) != a.n * a.lq * a.c) {
    TF_SetStatus(status, TF_INVALID_ARGUMENT,
                 "DiffusionAttentionGrad: P must be [N, heads, Lq, Lk] and ∂O like q");
    goto done;
  }
  a.p = TF_TensorData(in[3]);
  a.dout = TF_TensorData(in[4]);
  for (int i = 0; i < 3; i++) {
    const int64_t dims[2] = {TF_Dim(in[i], 0), TF_Dim(in[i], 1)};
    out[i] = TF_AllocateOutput(ctx, i, TF_FLOAT, dims, 2, dims[0] * dims[1] * sizeof(float),
                               status);
    if (TF_GetCode(status) != TF_OK) goto done;
  }
  a.dq = TF_TensorData(out[0]);
  a.dk = TF_TensorData(out[1]);
  a.dv = TF_TensorData(out[2]);
  parallel_for(a.n * a.heads, backward_units, &a);
done:
  if (TF_GetCode(status) != TF_OK) TF_OpKernelContext_Failure(ctx, status);
  for (int i = 0; i < 5; i++) if (in[i]) TF_DeleteTensor(in[i]);
  for (int i = 0; i < 3; i++) if (out[i]) TF_DeleteTensor(out[i]);
  TF_DeleteStatus(status);
}

__attribute__((constructor)) static void register_attention(void) {
  static const char* const forward_inputs[] = {"q: float", "k: float", "v: float", 0};
  static const char* const forward_outputs[] = {"out: float", "probs: float", 0};
  static const char* const backward_inputs[] = {"q: float", "k: float", "v: float",
                                                "probs: float", "dout: float", 0};
  static const char* const backward_outputs[] = {"dq: float", "dk: float", "dv: float", 0};
  static const char* const attrs[] = {"heads: int >= 1", "batch: int >= 1", 0};
  define_op("DiffusionAttention", forward_inputs, forward_outputs, attrs, create, forward,
            destroy);
  define_op("DiffusionAttentionGrad", backward_inputs, backward_outputs, attrs, create, backward,
            destroy);
}
