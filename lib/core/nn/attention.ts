/**
 * Attention for the denoisers: self-attention over a feature map's pixels, or cross-attention
 * from them to a sequence of context tokens (a text encoder's hidden states).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { applyKernelPair, type KernelPair } from "./kernel_pair.ts";
import { type ForwardContext, GroupNorm, Linear, type ParameterStore, record } from "./layers.ts";

/** Kernel names of the fused core (q, k, v → O, P) and its backward (q, k, v, P, ∂O → ∂q, ∂k, ∂v). */
export const ATTENTION = "DiffusionAttention";
export const ATTENTION_GRAD = "DiffusionAttentionGrad";

const ATTENTION_PAIR: KernelPair = {
  forward: ATTENTION,
  backward: ATTENTION_GRAD,
  inputs: ["q", "k", "v"],
  saved: ["q", "k", "v"],
  extraOutputs: ["probs"],
  gradient: "dout",
};

/**
 * The core of multi-head attention for `batch` samples: q [N·L_q, C] and k, v [N·L_k, C] (each
 * sample's tokens in consecutive rows, each head h its d = C/heads columns) →
 * concat_h(softmax(Q_h K_hᵀ/√d) V_h) [N·L_q, C]. One kernel each way where the backend has the
 * fused ones (the native backend: lib/runtime/kernels/attention.c), else the composite of
 * reshapes, transposes, batched products and a softmax.
 */
export function attentionCore(
  q: tf.Tensor2D,
  k: tf.Tensor2D,
  v: tf.Tensor2D,
  batch: number,
  heads: number,
): tf.Tensor2D {
  if (tf.getKernel(ATTENTION, tf.getBackend()) === undefined) {
    return compositeAttention(q, k, v, batch, heads);
  }
  return applyKernelPair(ATTENTION_PAIR, [q, k, v], { heads, batch }) as tf.Tensor2D;
}

/** [N·L, C] → [N·heads, L, d], each head's d = C/heads columns. */
function splitHeads(t: tf.Tensor2D, length: number, batch: number, heads: number): tf.Tensor3D {
  const d = t.shape[1] / heads;
  return tf.reshape(tf.transpose(tf.reshape(t, [batch, length, heads, d]), [0, 2, 1, 3]), [
    batch * heads,
    length,
    d,
  ]) as tf.Tensor3D;
}

/**
 * The attention weights A_h = softmax(Q_h K_hᵀ/√d) of q [N·L_q, C] and k [N·L_k, C]:
 * [N, heads, L_q, L_k], each row summing to 1 (what a cross-attention map shows).
 */
export function attentionWeights(
  q: tf.Tensor2D,
  k: tf.Tensor2D,
  batch: number,
  heads: number,
): tf.Tensor4D {
  return tf.tidy(() => {
    const d = q.shape[1] / heads;
    const [lq, lk] = [q.shape[0] / batch, k.shape[0] / batch];
    const scores = tf.matMul(
      splitHeads(q, lq, batch, heads),
      splitHeads(k, lk, batch, heads),
      false,
      true,
    );
    return tf.reshape(tf.softmax(tf.mul(scores, 1 / Math.sqrt(d))), [batch, heads, lq, lk]);
  });
}

/** {@link attentionCore} composed of TensorFlow.js ops. */
function compositeAttention(
  q: tf.Tensor2D,
  k: tf.Tensor2D,
  v: tf.Tensor2D,
  batch: number,
  heads: number,
): tf.Tensor2D {
  return tf.tidy(() => {
    const c = q.shape[1], d = c / heads;
    const [lq, lk] = [q.shape[0] / batch, k.shape[0] / batch];
    const weights = tf.reshape(attentionWeights(q, k, batch, heads), [batch * heads, lq, lk]);
    const attended = tf.matMul(weights as tf.Tensor3D, splitHeads(v, lk, batch, heads)); // [N·heads, L_q, d]
    return tf.reshape(
      tf.transpose(tf.reshape(attended, [batch, heads, lq, d]), [0, 2, 1, 3]),
      [batch * lq, c],
    ) as tf.Tensor2D;
  });
}

/**
 * Multi-head attention over the pixels of a feature map, with a residual connection (Vaswani et
 * al., 2017; the DDPM U-Net's self-attention, Stable Diffusion's cross-attention):
 *
 *   Q = GN(x)·W_q,  K = c·W_k,  V = c·W_v,  A_h = softmax(Q_h K_hᵀ / √d),
 *   y = x + concat_h(A_h V_h)·W_out,   d = C / heads,
 *
 * where c = GN(x) (self-attention) or the context tokens c ∈ ℝ^{L×C_ctx} (cross-attention, when
 * the layer is built with `contextDim`). q, k, v and out are separate layers, addressable by name
 * (`mid.attn.q`, …) as diffusers' `to_q`, `to_k`, `to_v`, `to_out`.
 */
export class Attention {
  readonly norm: GroupNorm;
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly out: Linear;
  /** Size of each context token (cross-attention), or null for self-attention. */
  readonly contextDim: number | null;

  constructor(
    store: ParameterStore,
    readonly name: string,
    readonly channels: number,
    readonly heads: number,
    groups: number,
    options: { contextDim?: number } = {},
  ) {
    if (channels % heads !== 0) {
      throw new Error(
        `Attention "${name}": ${channels} channels do not split into ${heads} heads; ` +
          `choose a head count that divides the channel count.`,
      );
    }
    this.contextDim = options.contextDim ?? null;
    const sourceDim = this.contextDim ?? channels;
    this.norm = new GroupNorm(store, `${name}.norm`, channels, groups);
    this.q = new Linear(store, `${name}.q`, channels, channels);
    this.k = new Linear(store, `${name}.k`, sourceDim, channels);
    this.v = new Linear(store, `${name}.v`, sourceDim, channels);
    this.out = new Linear(store, `${name}.out`, channels, channels);
  }

  /**
   * x [N, H, W, C] (and, for cross-attention, context [N, L, C_ctx]) → [N, H, W, C].
   */
  apply(x: tf.Tensor4D, ctx: ForwardContext, context?: tf.Tensor3D): tf.Tensor4D {
    const [n, h, w, c] = x.shape;
    const heads = this.heads;
    if ((this.contextDim === null) !== (context === undefined)) {
      throw new Error(
        this.contextDim === null
          ? `Attention "${this.name}" is self-attention and takes no context.`
          : `Attention "${this.name}" is cross-attention: pass context tokens [N, L, ${this.contextDim}].`,
      );
    }
    const y = tf.tidy(() => {
      const tokens = tf.reshape(this.norm.apply(x, ctx), [n * h * w, c]) as tf.Tensor2D;
      const length = context ? context.shape[1] : h * w;
      const source = context
        ? tf.reshape(context, [n * length, this.contextDim!]) as tf.Tensor2D
        : tokens;
      const [q, k] = [this.q.apply(tokens, ctx), this.k.apply(source, ctx)];
      if (context && ctx.attentionMaps) {
        ctx.attentionMaps.set(this.name, tf.keep(attentionWeights(q, k, n, heads)));
      }
      const merged = attentionCore(q, k, this.v.apply(source, ctx), n, heads);
      return tf.add(x, tf.reshape(this.out.apply(merged, ctx), [n, h, w, c])) as tf.Tensor4D;
    });
    record(ctx, this.name, y);
    return y;
  }
}
