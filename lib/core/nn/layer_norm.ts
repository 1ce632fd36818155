/**
 * Layer normalisation (Ba, Kiros & Hinton, 2016) over the last axis, as a transformer's tokens
 * take it:
 *
 *   y = γ · (x − μ) / √(σ² + ε) + β,   μ, σ² the mean and (biased) variance of each token's D values.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type ForwardContext, type ParameterStore, record } from "./layers.ts";

/** The layer of the module comment; γ starts at 1 and β at 0, as PyTorch's `nn.LayerNorm`. */
export class LayerNorm {
  readonly gamma: tf.Variable;
  readonly beta: tf.Variable;

  constructor(
    store: ParameterStore,
    readonly name: string,
    readonly features: number,
    readonly epsilon = 1e-5,
  ) {
    const layer = store.layer(name, "LayerNorm");
    this.gamma = store.parameter(layer, "gamma", [features], { constant: 1 });
    this.beta = store.parameter(layer, "beta", [features], { constant: 0 });
  }

  /** x [..., D] → [..., D]. */
  apply<T extends tf.Tensor>(x: T, ctx?: ForwardContext): T {
    const y = tf.tidy(() => {
      const axis = x.rank - 1;
      const { mean, variance } = tf.moments(x, axis, true);
      const normalised = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.epsilon)));
      return tf.add(tf.mul(normalised, this.gamma), this.beta) as T;
    });
    record(ctx, this.name, y);
    return y;
  }
}
