/**
 * The text encoder of chapter 6 (the tiny CLIP's text tower and the text-conditional U-Net's
 * context): a small transformer over the tokenizer's ids (lib/core/tokenizer.ts), CLIP's text
 * tower (Radford et al., 2021) in miniature,
 *
 *   h⁰ = E[ids] + P                                  token and learned position embeddings [N, L, D]
 *   h  ← h + MHA(LN(h)),   h ← h + W₂ GELU(W₁ LN(h))    one pre-norm block, `layers` times
 *   states = LN(h),        pooled = states at the EOS token
 *
 * with attention masked so that no token attends to padding: a PAD key's score gets −10⁹ before
 * the softmax. (CLIP's tower is causal and pools at EOS; here every word sees the whole prompt,
 * which short captions use better, and the pooled state is still EOS's.) The token states are
 * the U-Net's cross-attention context; the pooled state, projected, is CLIP's text embedding.
 * Multi-head attention splits D into `heads` heads of D/heads:
 *
 *   A_h = softmax(Q_h K_hᵀ/√(D/heads) + M),   MHA = concat_h(A_h V_h) W_o,   M_ij = −10⁹ at PAD keys j.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type ForwardContext, gelu, INFERENCE, Linear, ParameterStore } from "../nn/layers.ts";
import { LayerNorm } from "../nn/layer_norm.ts";
import { PAD } from "../tokenizer.ts";
import type { NamedVariable } from "../nn/layers.ts";

/** The encoder's configuration. */
export interface TextEncoderConfig {
  /** Always "textEncoder". */
  kind: "textEncoder";
  /** Token ids, special tokens included (the tokenizer's `vocabularySize`). */
  vocabularySize: number;
  /** L, the ids of an encoding (the tokenizer's `contextLength`). */
  contextLength: number;
  /** D, the width of every token state. */
  width: number;
  /** Transformer blocks. */
  layers: number;
  /** Attention heads (divides D). */
  heads: number;
  /** The MLP's hidden width, in multiples of D. */
  mlpRatio: number;
  /** Seed of the initial weights. */
  seed: number;
}

/** Fill a partial configuration with the defaults and check it. */
export function completeTextEncoderConfig(
  partial: Partial<TextEncoderConfig> & Pick<TextEncoderConfig, "vocabularySize">,
): TextEncoderConfig {
  const config: TextEncoderConfig = {
    kind: "textEncoder",
    contextLength: 16,
    width: 128,
    layers: 2,
    heads: 4,
    mlpRatio: 4,
    seed: 0,
    ...partial,
  };
  if (config.width % config.heads !== 0) {
    throw new Error(
      `text encoder: ${config.width} channels do not split into ${config.heads} heads; choose a ` +
        `head count that divides the width`,
    );
  }
  return config;
}

interface Block {
  norm1: LayerNorm;
  q: Linear;
  k: Linear;
  v: Linear;
  out: Linear;
  norm2: LayerNorm;
  fc1: Linear;
  fc2: Linear;
}

/** What the encoder gives for a batch of prompts. */
export interface TextEncoding {
  /** Token states [N, L, D] (the cross-attention context). */
  states: tf.Tensor3D;
  /** The EOS token's state [N, D]. */
  pooled: tf.Tensor2D;
}

/** The transformer of the module comment. */
export class TextEncoder {
  readonly config: TextEncoderConfig;
  /** Trainable parameters in creation order (their names are the checkpoint's). */
  readonly parameters: readonly NamedVariable[];
  readonly #tokens: tf.Variable;
  readonly #positions: tf.Variable;
  readonly #blocks: Block[];
  readonly #final: LayerNorm;

  /**
   * @param partial the configuration (missing fields take the defaults)
   * @param part where a larger network keeps this one's parameters: its store, and a prefix for
   *   their names (the tiny CLIP's "text."); by default a store of its own, seeded by `seed`
   */
  constructor(
    partial: Partial<TextEncoderConfig> & Pick<TextEncoderConfig, "vocabularySize">,
    part: { store?: ParameterStore; prefix?: string } = {},
  ) {
    this.config = completeTextEncoderConfig(partial);
    const { vocabularySize, contextLength, width: d, layers, mlpRatio } = this.config;
    const store = part.store ?? new ParameterStore(this.config.seed);
    const p = part.prefix ?? "";
    const first = store.parameters.length;
    // N(0, 0.02²) in CLIP; a uniform of the same standard deviation here.
    const embedding = { uniform: 0.02 * Math.sqrt(3) };
    this.#tokens = store.parameter(store.layer(`${p}token`, "Embedding"), "embedding", [
      vocabularySize,
      d,
    ], embedding);
    this.#positions = store.parameter(store.layer(`${p}position`, "Embedding"), "embedding", [
      contextLength,
      d,
    ], embedding);
    this.#blocks = Array.from({ length: layers }, (_, l) => ({
      norm1: new LayerNorm(store, `${p}block${l}.norm1`, d),
      q: new Linear(store, `${p}block${l}.attn.q`, d, d),
      k: new Linear(store, `${p}block${l}.attn.k`, d, d),
      v: new Linear(store, `${p}block${l}.attn.v`, d, d),
      out: new Linear(store, `${p}block${l}.attn.out`, d, d),
      norm2: new LayerNorm(store, `${p}block${l}.norm2`, d),
      fc1: new Linear(store, `${p}block${l}.mlp.fc1`, d, mlpRatio * d),
      fc2: new Linear(store, `${p}block${l}.mlp.fc2`, mlpRatio * d, d),
    }));
    this.#final = new LayerNorm(store, `${p}final.norm`, d);
    this.parameters = store.parameters.slice(first);
  }

  /** Number of trainable parameters. */
  parameterCount(): number {
    return this.parameters.reduce((sum, p) => sum + p.variable.size, 0);
  }

  /**
   * The token states and the pooled state of `ids` [N, L] (int32, the tokenizer's encodings).
   * `added` [k, D] are the embeddings of k tokens beyond the vocabulary (ids V … V + k − 1, the
   * placeholders of textual inversion), looked up as if they were rows V … V + k − 1 of E.
   *
   * @throws Error when the ids are not [N, L] or hold an id outside the vocabulary
   */
  encode(ids: tf.Tensor2D, ctx: ForwardContext = INFERENCE, added?: tf.Tensor2D): TextEncoding {
    const { contextLength: L, width: D, vocabularySize } = this.config;
    const [n, length] = ids.shape;
    if (length !== L || ids.dtype !== "int32") {
      throw new Error(`text encoder: ids must be int32 [N, ${L}], not ${ids.dtype} [${ids.shape}]`);
    }
    if (added && added.shape[1] !== D) {
      throw new Error(`text encoder: added embeddings must be [k, ${D}], not [${added.shape}]`);
    }
    const size = vocabularySize + (added?.shape[0] ?? 0);
    const values = ids.dataSync();
    const outside = values.find((id) => id < 0 || id >= size);
    if (outside !== undefined) {
      throw new Error(
        `text encoder: token id ${outside} is outside the vocabulary (0…${size - 1})` +
          (outside >= vocabularySize && !added
            ? "; a prompt with a learned token needs its embedding"
            : ""),
      );
    }
    return tf.tidy(() => {
      const keep = tf.cast(tf.notEqual(ids, PAD), "float32");
      // M [N, 1, 1, L]: 0 for a word, −10⁹ for padding.
      const bias = tf.reshape(tf.mul(tf.sub(1, keep), -1e9), [n, 1, 1, L]);
      const table = added ? tf.concat([this.#tokens, added]) : this.#tokens;
      let h = tf.add(tf.gather(table, ids), this.#positions) as tf.Tensor3D;
      for (const block of this.#blocks) {
        h = tf.add(h, this.#attention(block, block.norm1.apply(h, ctx), bias, ctx)) as tf.Tensor3D;
        const x = tf.reshape(block.norm2.apply(h, ctx), [n * L, D]) as tf.Tensor2D;
        const mlp = block.fc2.apply(gelu(block.fc1.apply(x, ctx)) as tf.Tensor2D, ctx);
        h = tf.add(h, tf.reshape(mlp, [n, L, D])) as tf.Tensor3D;
      }
      const states = this.#final.apply(h, ctx);
      // The EOS token sits after the last word: at Σ mask − 1.
      const one = tf.scalar(1, "int32");
      const eos = tf.sub(tf.sum(tf.cast(keep, "int32"), 1), one);
      const rows = tf.add(tf.mul(tf.range(0, n, 1, "int32"), tf.scalar(L, "int32")), eos);
      const pooled = tf.gather(tf.reshape(states, [n * L, D]), rows) as tf.Tensor2D;
      return { states, pooled };
    });
  }

  /** MHA of the module comment over normalised tokens x [N, L, D]. */
  #attention(block: Block, x: tf.Tensor3D, bias: tf.Tensor, ctx: ForwardContext): tf.Tensor3D {
    const { contextLength: L, width: D, heads } = this.config;
    const n = x.shape[0];
    const d = D / heads;
    const flat = tf.reshape(x, [n * L, D]) as tf.Tensor2D;
    const split = (t: tf.Tensor2D) => tf.transpose(tf.reshape(t, [n, L, heads, d]), [0, 2, 1, 3]);
    const [q, k, v] = [block.q, block.k, block.v].map((layer) => split(layer.apply(flat, ctx)));
    const scores = tf.add(tf.div(tf.matMul(q, k, false, true), Math.sqrt(d)), bias);
    const merged = tf.transpose(tf.matMul(tf.softmax(scores), v), [0, 2, 1, 3]);
    const out = block.out.apply(tf.reshape(merged, [n * L, D]) as tf.Tensor2D, ctx);
    return tf.reshape(out, [n, L, D]) as tf.Tensor3D;
  }

  /** The token embedding E [V, D] (frozen in textual inversion; read its rows, e.g. an initializer's). */
  get tokenEmbedding(): tf.Variable {
    return this.#tokens;
  }

  /** Free every variable. */
  dispose(): void {
    tf.dispose(this.parameters.map((p) => p.variable));
  }
}
