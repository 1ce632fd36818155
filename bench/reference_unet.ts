/**
 * The reference U-Net of the benchmark, in plain TensorFlow.js ops: 522,048 parameters at C = 32.
 *
 * The same network is written in PyTorch and Keras in `bench/reference_unet.py`; the benchmark
 * (`scripts/bench.ts`) times one DDPM training step and one DDIM sampling step of each.
 *
 * Architecture (NHWC, S×S×3 input, 3×3 convolutions without bias, GroupNorm with 8 groups):
 *
 *   e   = SiLU(W₂ · SiLU(W₁ · sinusoid₃₂(t) + b₁) + b₂)                  time embedding, 128
 *   h₀  = conv₃→C(x)                                                     `in`
 *   h₁  = h₀ + conv_C→C(SiLU(GN(h₀))) + P₁e                              block b1
 *   h₂  = b2(conv↓_C→2C(h₁)),  h₃ = m(conv↓_2C→4C(h₂))                  d1, b2, d2, m
 *   u₂  = conv_4C→2C(SiLU(GN([convᵀ↑_4C→2C(h₃), h₂])))                   u2, up block
 *   u₁  = conv_2C→C(SiLU(GN([conv_2C→C(up₂ₓ(u₂)), h₁])))                 nearest up, up block
 *   ε̂   = conv_C→3(SiLU(GN(u₁)))                                         output block
 *
 * where P_b are bias-free dense projections 128 → channels of block b.
 *
 * The parameter count fixes the choices the description leaves open: convolutions and
 * projections without bias give 520,896 weights, and the remaining 1,152 are exactly the
 * GroupNorm affine parameters (γ, β for 32 + 64 + 128 + 128 + 64 + 32 channels = 896) plus the
 * two time-MLP biases (2 × 128 = 256). The transposed convolution is 3×3 like the rest (a 2×2
 * or 4×4 one would miss the count by tens of thousands).
 *
 * Initialisation as PyTorch's defaults: weights of fan-in f from U(−1/√f, 1/√f), biases 0,
 * γ = 1, β = 0, drawn on the host from a seeded generator so every backend starts equal.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { Random } from "../lib/core/random.ts";
import { groupNormSiLU } from "../lib/core/nn/group_norm_silu.ts";

export { groupNormSiLU };

/** Sizes of the reference U-Net. */
export interface ReferenceUNetConfig {
  /** Base channel count C. */
  channels: number;
  /** GroupNorm groups. */
  groups: number;
  /** Size of the sinusoidal time features. */
  timeDim: number;
  /** Width of the time MLP and its embedding. */
  embedDim: number;
  /** Channels of the images. */
  imageChannels: number;
}

/** The benchmark's network: C = 32, 8 groups, 32 → 128 time features, RGB. */
export const REFERENCE_CONFIG: ReferenceUNetConfig = {
  channels: 32,
  groups: 8,
  timeDim: 32,
  embedDim: 128,
  imageChannels: 3,
};

/** Parameters of the reference U-Net at `REFERENCE_CONFIG`. */
export const REFERENCE_PARAMETER_COUNT = 522_048;

/** Shapes of every parameter, by name. */
export function parameterShapes(
  config: ReferenceUNetConfig = REFERENCE_CONFIG,
): Record<string, number[]> {
  const { channels: c, timeDim, embedDim: e, imageChannels: k } = config;
  const conv = (cin: number, cout: number) => [3, 3, cin, cout];
  const block = (name: string, cin: number, cout: number, time: boolean) => ({
    [`${name}.gamma`]: [cin],
    [`${name}.beta`]: [cin],
    [`${name}.conv`]: conv(cin, cout),
    ...(time ? { [`${name}.proj`]: [e, cout] } : {}),
  });
  return {
    "time.w1": [timeDim, e],
    "time.b1": [e],
    "time.w2": [e, e],
    "time.b2": [e],
    "in": conv(k, c),
    ...block("b1", c, c, true),
    "d1": conv(c, 2 * c),
    ...block("b2", 2 * c, 2 * c, true),
    "d2": conv(2 * c, 4 * c),
    ...block("m", 4 * c, 4 * c, true),
    // conv2dTranspose filters are [h, w, outChannels, inChannels].
    "u2": [3, 3, 2 * c, 4 * c],
    ...block("ub2", 4 * c, 2 * c, false),
    "up": conv(2 * c, c),
    ...block("ub1", 2 * c, c, false),
    ...block("out", c, k, false),
  };
}

/**
 * Multiply–adds × 2 of one forward pass for a batch of one S×S image: every convolution
 * costs 2·H_out·W_out·9·C_in·C_out (a transposed one 2·H_in·W_in·9·C_in·C_out), every dense
 * layer 2·in·out. Normalisation and activations (O(activations)) are left out, as is custom.
 * A training step is counted as 3× the forward pass (forward, input and weight gradients).
 */
export function forwardFlops(size: number, config: ReferenceUNetConfig = REFERENCE_CONFIG): number {
  const { channels: c, timeDim, embedDim: e, imageChannels: k } = config;
  const conv = (s: number, cin: number, cout: number) => 2 * s * s * 9 * cin * cout;
  const s1 = size, s2 = size / 2, s3 = size / 4;
  return 2 * (timeDim * e + e * e + e * c + e * 2 * c + e * 4 * c) +
    conv(s1, k, c) + conv(s1, c, c) + conv(s2, c, 2 * c) + conv(s2, 2 * c, 2 * c) +
    conv(s3, 2 * c, 4 * c) + conv(s3, 4 * c, 4 * c) + conv(s3, 4 * c, 2 * c) +
    conv(s2, 4 * c, 2 * c) + conv(s1, 2 * c, c) + conv(s1, 2 * c, c) + conv(s1, c, k);
}

/**
 * Sinusoidal time features, computed on the host:
 *
 *   emb(t) = [sin(t·ω₀), …, sin(t·ω_{d/2−1}), cos(t·ω₀), …, cos(t·ω_{d/2−1})],
 *   ω_i = 10000^(−i/(d/2)).
 */
export function sinusoidalEmbedding(t: ArrayLike<number>, dim: number): tf.Tensor2D {
  const half = dim / 2;
  const values = new Float32Array(t.length * dim);
  for (let n = 0; n < t.length; n++) {
    for (let i = 0; i < half; i++) {
      const angle = t[n] * Math.exp(-Math.log(10000) * i / half);
      values[n * dim + i] = Math.sin(angle);
      values[n * dim + half + i] = Math.cos(angle);
    }
  }
  return tf.tensor2d(values, [t.length, dim]);
}

/** Where one named parameter lies in the flat parameter vector θ. */
export interface ParameterSlot {
  /** Its name (see `parameterShapes`). */
  name: string;
  /** Its shape. */
  shape: number[];
  /** Index of its first value in θ. */
  offset: number;
  /** Number of values. */
  size: number;
}

/**
 * The reference U-Net ε_θ(x_t, t). All parameters live in one flat variable θ, which the
 * forward pass splits into named weights with a single SplitV; the optimizer then updates θ
 * with a handful of ops rather than a dozen per parameter.
 */
export class ReferenceUNet {
  /** Every parameter, flattened and concatenated in `slots` order. */
  readonly theta: tf.Variable<tf.Rank.R1>;
  /** Name, shape and place of each parameter in θ. */
  readonly slots: ParameterSlot[];
  #views?: Record<string, tf.Tensor>;
  #viewsOf?: tf.Tensor;

  /** Creates the parameters, PyTorch-default initialised from `seed`. */
  constructor(readonly config: ReferenceUNetConfig = REFERENCE_CONFIG, seed = 0) {
    const random = new Random(seed);
    this.slots = [];
    let offset = 0;
    for (const [name, shape] of Object.entries(parameterShapes(config))) {
      const size = shape.reduce((a, b) => a * b, 1);
      this.slots.push({ name, shape, offset, size });
      offset += size;
    }
    const values = new Float32Array(offset);
    for (const { name, shape, offset, size } of this.slots) {
      if (name.endsWith(".gamma")) values.fill(1, offset, offset + size);
      else if (!name.endsWith(".beta") && !/\.b\d$/.test(name)) {
        // Fan-in: the input side of the layer (a transposed conv's input channels are last).
        const fanIn = shape.length === 2 ? shape[0] : 9 * (name === "u2" ? shape[3] : shape[2]);
        const bound = 1 / Math.sqrt(fanIn);
        for (let i = offset; i < offset + size; i++) values[i] = (2 * random.uniform() - 1) * bound;
      }
    }
    const initial = tf.tensor1d(values);
    this.theta = tf.variable(initial, true);
    initial.dispose();
  }

  /** Number of scalar parameters. */
  get parameterCount(): number {
    return this.theta.size;
  }

  /** The named parameters as tensors of their shapes, cut from `theta` (one SplitV). */
  weights(theta: tf.Tensor1D = this.theta): Record<string, tf.Tensor> {
    const parts = tf.split(theta, this.slots.map((s) => s.size));
    return Object.fromEntries(this.slots.map((s, i) => [s.name, tf.reshape(parts[i], s.shape)]));
  }

  /**
   * ε_θ(x_t, t) for images x_t [B, S, S, 3] and time features [B, timeDim], with the weights
   * cut from `theta` (pass the tensor being differentiated), or cached views of `this.theta`.
   */
  predictNoise(xt: tf.Tensor4D, timeFeatures: tf.Tensor2D, theta?: tf.Tensor1D): tf.Tensor4D {
    return tf.tidy(() => {
      const p = theta ? this.weights(theta) : this.cachedWeights();
      const [n, size] = xt.shape;
      const { channels: c, groups } = this.config;
      const hidden = silu(
        tf.add(tf.matMul(timeFeatures, p["time.w1"] as tf.Tensor2D), p["time.b1"]),
      );
      const e = silu(
        tf.add(tf.matMul(hidden, p["time.w2"] as tf.Tensor2D), p["time.b2"]),
      ) as tf.Tensor2D;
      const block = (name: string, x: tf.Tensor4D) =>
        conv(groupNormSiLU(x, p[`${name}.gamma`], p[`${name}.beta`], groups), p[`${name}.conv`]);
      const timeBlock = (name: string, x: tf.Tensor4D) => {
        const projection = tf.matMul(e, p[`${name}.proj`] as tf.Tensor2D);
        const bias = tf.add(x, tf.reshape(projection, [n, 1, 1, x.shape[3]]));
        return tf.add(bias, block(name, x)) as tf.Tensor4D;
      };
      const h1 = timeBlock("b1", conv(xt, p["in"]));
      const h2 = timeBlock("b2", conv(h1, p["d1"], 2));
      const h3 = timeBlock("m", conv(h2, p["d2"], 2));
      const u2 = tf.conv2dTranspose(
        h3,
        p["u2"] as tf.Tensor4D,
        [n, size / 2, size / 2, 2 * c],
        2,
        "same",
      );
      const v2 = block("ub2", tf.concat([u2, h2], 3));
      const v1 = conv(upsampleNearest2x(v2), p["up"]);
      return block("out", block("ub1", tf.concat([v1, h1], 3)));
    });
  }

  /** Views of `this.theta` kept between calls (for sampling), renewed when θ changes. */
  private cachedWeights(): Record<string, tf.Tensor> {
    if (this.#viewsOf !== this.theta.dataId as unknown) {
      for (const v of Object.values(this.#views ?? {})) v.dispose();
      this.#views = tf.tidy(() => this.weights());
      for (const v of Object.values(this.#views)) tf.keep(v);
      this.#viewsOf = this.theta.dataId as unknown as tf.Tensor;
    }
    return this.#views!;
  }

  /** Frees the parameters. */
  dispose(): void {
    for (const v of Object.values(this.#views ?? {})) v.dispose();
    this.theta.dispose();
  }
}

function conv(x: tf.Tensor4D, filter: tf.Tensor, stride = 1): tf.Tensor4D {
  return tf.conv2d(x, filter as tf.Tensor4D, stride, "same");
}

function silu<T extends tf.Tensor>(x: T): T {
  return tf.mul(x, tf.sigmoid(x));
}

/**
 * Nearest-neighbour 2× upsampling, y[n, 2h + a, 2w + b, c] = x[n, h, w, c], as one broadcast
 * multiply ([N·H, 1, W, 1, C] × ones [1, 2, 1, 2, 1]; a Tile is 30× slower on wasm), with its
 * exact gradient, the 2×2 block sum of dy (never tfjs' ResizeNearestNeighborGrad, which is
 * wrong on cpu for batch > 1).
 */
export function upsampleNearest2x(x: tf.Tensor4D): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const up = tf.customGrad((input) => {
    const value = tf.tidy(() => {
      const repeated = tf.mul(
        tf.reshape(input as tf.Tensor, [n * h, 1, w, 1, c]),
        tf.ones([1, 2, 1, 2, 1]),
      );
      return tf.reshape(repeated, [n, 2 * h, 2 * w, c]);
    });
    const gradFunc = (dy: tf.Tensor) =>
      tf.tidy(() => {
        const rows = tf.sum(tf.reshape(dy, [n * h, 2, 2 * w * c]), 1);
        return tf.reshape(tf.sum(tf.reshape(rows, [n * h * w, 2, c]), 1), [n, h, w, c]);
      });
    return { value, gradFunc };
  });
  return up(x) as tf.Tensor4D;
}

/** A linear β schedule and its ᾱ_t = Π_{s≤t} (1 − β_s). */
export function linearAlphaBar(steps = 1000, betaStart = 1e-4, betaEnd = 0.02): Float64Array {
  const alphaBar = new Float64Array(steps);
  let product = 1;
  for (let t = 0; t < steps; t++) {
    product *= 1 - (betaStart + (betaEnd - betaStart) * t / (steps - 1));
    alphaBar[t] = product;
  }
  return alphaBar;
}

/**
 * One DDPM training step (Ho et al., 2020, Algorithm 1) with Adam (Kingma & Ba, 2015) on θ:
 *
 *   x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε,   L = ‖ε − ε_θ(x_t, t)‖² / (B·S·S·3),
 *   m ← β₁m + (1 − β₁)g,  v ← β₂v + (1 − β₂)g²,
 *   θ ← θ − η √(1 − β₂ᵏ)/(1 − β₁ᵏ) · m / (√v + ε̂),  ε̂ = 10⁻⁷ √(1 − β₂ᵏ),
 *
 * which is Adam's bias-corrected update m̂/(√v̂ + ε) (β₁ = 0.9, β₂ = 0.999, ε = 10⁻⁷ as tfjs)
 * written with a dozen ops on the flat θ.
 */
export class ReferenceTrainer {
  /** ᾱ_t of the linear schedule, T = 1000, β from 1e-4 to 0.02. */
  readonly alphaBar = linearAlphaBar();
  /** Adam's first and second moments of θ's gradient. */
  readonly moments: { m: tf.Variable<tf.Rank.R1>; v: tf.Variable<tf.Rank.R1> };
  /** Steps taken. */
  stepCount = 0;

  constructor(readonly model: ReferenceUNet, readonly learningRate = 1e-3) {
    const zeros = () => tf.tidy(() => tf.variable(tf.zerosLike(model.theta), false));
    this.moments = { m: zeros(), v: zeros() };
  }

  /** Takes one step on clean images x₀, timesteps t and noise ε; returns the loss (undisposed). */
  step(x0: tf.Tensor4D, t: ArrayLike<number>, noise: tf.Tensor4D): tf.Scalar {
    const { value, grad } = this.lossAndGradient(x0, t, noise);
    this.stepCount++;
    const [beta1, beta2, k] = [0.9, 0.999, this.stepCount];
    const rate = this.learningRate * Math.sqrt(1 - beta2 ** k) / (1 - beta1 ** k);
    const epsilon = 1e-7 * Math.sqrt(1 - beta2 ** k);
    const { m, v } = this.moments;
    const theta = this.model.theta;
    const [m1, v1, theta1] = tf.tidy((): tf.Tensor1D[] => {
      const m1 = tf.add(tf.mul(m, beta1), tf.mul(grad, 1 - beta1));
      const v1 = tf.add(tf.mul(v, beta2), tf.mul(tf.square(grad), 1 - beta2));
      const theta1 = tf.sub(theta, tf.mul(tf.div(m1, tf.add(tf.sqrt(v1), epsilon)), rate));
      return [m1, v1, theta1] as tf.Tensor1D[];
    });
    grad.dispose();
    m.assign(m1);
    v.assign(v1);
    theta.assign(theta1);
    tf.dispose([m1, v1, theta1]);
    return value;
  }

  /** The loss and its gradient with respect to θ (flat, in `model.slots` order), no update. */
  lossAndGradient(
    x0: tf.Tensor4D,
    t: ArrayLike<number>,
    noise: tf.Tensor4D,
  ): { value: tf.Scalar; grad: tf.Tensor1D } {
    return tf.tidy(() => {
      const { xt, features } = this.noised(x0, t, noise);
      const loss = (theta: tf.Tensor) =>
        tf.mean(
          tf.squaredDifference(noise, this.model.predictNoise(xt, features, theta as tf.Tensor1D)),
        );
      const { value, grad } = tf.valueAndGrad(loss)(this.model.theta);
      return { value: value as tf.Scalar, grad: grad as tf.Tensor1D };
    });
  }

  /** Frees Adam's moments (the model is the caller's). */
  dispose(): void {
    this.moments.m.dispose();
    this.moments.v.dispose();
  }

  private noised(x0: tf.Tensor4D, t: ArrayLike<number>, noise: tf.Tensor4D) {
    const n = x0.shape[0];
    const a = new Float32Array(n), b = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      a[i] = Math.sqrt(this.alphaBar[t[i]]);
      b[i] = Math.sqrt(1 - this.alphaBar[t[i]]);
    }
    const xt = tf.add(
      tf.mul(x0, tf.tensor4d(a, [n, 1, 1, 1])),
      tf.mul(noise, tf.tensor4d(b, [n, 1, 1, 1])),
    );
    return { xt: xt as tf.Tensor4D, features: sinusoidalEmbedding(t, this.model.config.timeDim) };
  }

  /**
   * One deterministic DDIM step (Song et al., 2021, η = 0) from t to tPrev:
   *
   *   x̂₀ = (x_t − √(1 − ᾱ_t) ε_θ) / √ᾱ_t,   x_{t'} = √ᾱ_{t'} x̂₀ + √(1 − ᾱ_{t'}) ε_θ.
   */
  ddimStep(xt: tf.Tensor4D, t: number, tPrev: number): tf.Tensor4D {
    return tf.tidy(() => {
      const n = xt.shape[0];
      const eps = this.model.predictNoise(
        xt,
        sinusoidalEmbedding(new Array(n).fill(t), this.model.config.timeDim),
      );
      const at = this.alphaBar[t], ap = tPrev >= 0 ? this.alphaBar[tPrev] : 1;
      const x0 = tf.div(tf.sub(xt, tf.mul(eps, Math.sqrt(1 - at))), Math.sqrt(at));
      return tf.add(tf.mul(x0, Math.sqrt(ap)), tf.mul(eps, Math.sqrt(1 - ap)));
    });
  }
}
