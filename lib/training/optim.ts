/**
 * The update of a training step, over a given list of parameters: Adam (Kingma & Ba, 2015) or
 * AdamW (Loshchilov & Hutter, 2019), and the exponential moving average of the weights that
 * sampling uses.
 *
 *   m ← β₁ m + (1 − β₁) g,  v ← β₂ v + (1 − β₂) g²,
 *   θ ← θ − η m̂ / (√v̂ + ε),  m̂ = m / (1 − β₁ᵏ),  v̂ = v / (1 − β₂ᵏ)
 *   (Adam adds λθ to g; AdamW subtracts η λ θ from θ instead),
 *   θ̄ ← d θ̄ + (1 − d) θ.
 *
 * Which parameters train is the caller's list: all of a network's, a LoRA's, one embedding
 * row. m, v and θ̄ are each one flat vector over the list (in its order), so an update is a
 * dozen kernels whatever the number of parameter tensors (on WebGPU, 6,000 of a step's 6,300
 * kernels were per-tensor updates before).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { NamedVariable } from "../core/nn/layers.ts";
import { ADAM_STEP } from "../runtime/kernels/native_fast_paths.ts";

/** Adam's settings. */
export interface AdamOptions {
  /** Adam (L2 weight decay added to the gradient) or AdamW (decoupled weight decay). */
  optimizer: "adam" | "adamw";
  /** β₁. */
  beta1: number;
  /** β₂. */
  beta2: number;
  /** ε. */
  epsilon: number;
  /** Weight decay λ. */
  weightDecay: number;
}

/** The variables' values as one vector, in order. */
export function flatten(variables: readonly NamedVariable[]): tf.Tensor1D {
  return tf.concat(variables.map((p) => tf.reshape(p.variable, [-1]))) as tf.Tensor1D;
}

/** The inverse of `flatten`: consecutive pieces of `flat`, shaped as `variables`. */
export function unflatten(flat: tf.Tensor, variables: readonly NamedVariable[]): tf.Tensor[] {
  const pieces = tf.split(flat, variables.map((p) => p.variable.size));
  return pieces.map((piece, i) => tf.reshape(piece, variables[i].variable.shape));
}

/**
 * ∇θ as one vector, in the order of `parameters`, from `tf.variableGrads`' map; a parameter the
 * loss does not reach gets a zero gradient (and so, with zero moments, no update).
 */
export function flatGradient(
  grads: tf.NamedTensorMap,
  parameters: readonly NamedVariable[],
): tf.Tensor1D {
  return tf.tidy(() =>
    tf.concat(
      parameters.map((p) => tf.reshape(grads[p.variable.name] ?? tf.zerosLike(p.variable), [-1])),
    )
  ) as tf.Tensor1D;
}

/** Assign the pieces of `flat` to `variables` (see `unflatten`). */
export function assignPieces(flat: tf.Tensor, variables: readonly NamedVariable[]): void {
  unflatten(flat, variables).forEach((piece, i) => variables[i].variable.assign(piece));
}

/**
 * The pieces of a flat vector as named variables shaped like `like` (for checkpoints; the caller
 * disposes them).
 */
export function namedPieces(flat: tf.Tensor, like: readonly NamedVariable[]): NamedVariable[] {
  return tf.tidy(() =>
    unflatten(flat, like).map((piece, i) => ({
      name: like[i].name,
      variable: tf.variable(piece, false),
    }))
  );
}

/** Adam over `parameters`, with its moments m and v as flat vectors. */
export class Adam {
  /** First moment m, flat. */
  readonly m: tf.Variable;
  /** Second moment v, flat. */
  readonly v: tf.Variable;

  constructor(readonly parameters: readonly NamedVariable[], readonly options: AdamOptions) {
    const count = parameters.reduce((total, p) => total + p.variable.size, 0);
    this.m = tf.tidy(() => tf.variable(tf.zeros([count]), false));
    this.v = tf.tidy(() => tf.variable(tf.zeros([count]), false));
  }

  /**
   * Step k (1-based) with the flat gradient g and learning rate η: updates m and v and assigns
   * the new θ to the parameters. Returns the new θ, flat (call inside `tf.tidy`).
   */
  update(g: tf.Tensor1D, lr: number, k: number): tf.Tensor1D {
    const { beta1, beta2, epsilon, optimizer, weightDecay } = this.options;
    const correction1 = 1 - beta1 ** k;
    const correction2 = 1 - beta2 ** k;
    const theta = flatten(this.parameters);
    let gk: tf.Tensor = g;
    if (optimizer === "adam" && weightDecay > 0) gk = tf.add(gk, tf.mul(theta, weightDecay));
    const newM = tf.add(tf.mul(this.m, beta1), tf.mul(gk, 1 - beta1));
    const newV = tf.add(tf.mul(this.v, beta2), tf.mul(tf.square(gk), 1 - beta2));
    const step = tf.mul(
      tf.div(tf.div(newM, correction1), tf.add(tf.sqrt(tf.div(newV, correction2)), epsilon)),
      lr,
    );
    let newTheta = tf.sub(theta, step);
    if (optimizer === "adamw" && weightDecay > 0) {
      newTheta = tf.sub(newTheta, tf.mul(theta, lr * weightDecay));
    }
    this.m.assign(newM);
    this.v.assign(newV);
    assignPieces(newTheta, this.parameters);
    return newTheta as tf.Tensor1D;
  }

  /** Free m and v. */
  dispose(): void {
    tf.dispose([this.m, this.v]);
  }
}

/**
 * The EMA θ̄ of `parameters`, kept flat and written into `target` (the EMA network's matching
 * variables) only when asked, so that a step costs one fused update.
 */
export class ExponentialMovingAverage {
  /** θ̄, flat. */
  readonly average: tf.Variable;
  #stale = false;

  constructor(
    parameters: readonly NamedVariable[],
    readonly target: readonly NamedVariable[],
  ) {
    this.average = tf.tidy(() => tf.variable(flatten(parameters), false));
  }

  /** θ̄ ← d θ̄ + (1 − d) θ, with θ flat (call inside `tf.tidy`). */
  update(theta: tf.Tensor1D, decay: number): void {
    this.average.assign(tf.add(tf.mul(this.average, decay), tf.mul(theta, 1 - decay)));
    this.#stale = true;
  }

  /** θ̄ ← `average`, computed elsewhere (the fused step): it becomes the variable's value. */
  replace(average: tf.Tensor): void {
    this.average.assign(average);
    this.#stale = true;
  }

  /** Write θ̄ into the target variables, if it changed since the last time. */
  sync(): void {
    if (!this.#stale) return;
    tf.tidy(() => assignPieces(this.average, this.target));
    this.#stale = false;
  }

  /** Take θ̄ from the target variables (after they were loaded from a checkpoint). */
  reload(): void {
    tf.tidy(() => this.average.assign(flatten(this.target)));
    this.#stale = false;
  }

  /** Free θ̄. */
  dispose(): void {
    this.average.dispose();
  }
}

/** What a step's update needs besides the gradients. */
export interface UpdateSettings {
  /** The learning rate η of this step. */
  lr: number;
  /** The step k, 1-based (Adam's bias corrections). */
  k: number;
  /** Clip ∇θ to this global norm; null for no clipping. */
  clipNorm: number | null;
  /** The EMA's decay d for this step. */
  emaDecay: number;
}

/**
 * A step's update, computed as far as it can be before ‖g‖ is known on the host: the caller
 * reads ‖g‖ (with the loss, in one transfer), then commits the update or discards it.
 */
export interface ProposedUpdate {
  /** ‖∇θ‖ before clipping, a scalar tensor. */
  readonly norm: tf.Scalar;
  /** Apply it: the new θ into the parameters, the new m, v and θ̄. `norm` is ‖g‖ as read. */
  commit(norm: number): void;
  /** Drop it (the loss or ‖g‖ was not finite): nothing changes. */
  discard(): void;
}

/**
 * The update of one training step from `tf.variableGrads`' gradients of `parameters` (Adam's
 * and the EMA's list): clip to `clipNorm`, Adam, θ̄ ← d θ̄ + (1 − d) θ (no EMA when `average`
 * is null; `emaDecay` is then unused).
 *
 * Where the backend has the project's fused step (the native backend with its ops built:
 * lib/runtime/kernels/adam_step.c), all of it is one kernel, run before ‖g‖ is read; elsewhere
 * the composite above, whose clipping factor C/(‖g‖ + 10⁻⁶) needs ‖g‖ on the host first. Both
 * round every product and sum alike; only ‖g‖ is summed in another order.
 */
export function proposeUpdate(
  adam: Adam,
  average: ExponentialMovingAverage | null,
  grads: tf.NamedTensorMap,
  settings: UpdateSettings,
): ProposedUpdate {
  return tf.getKernel(ADAM_STEP, tf.getBackend()) === undefined
    ? compositeUpdate(adam, average, grads, settings)
    : fusedUpdate(adam, average, grads, settings);
}

function compositeUpdate(
  adam: Adam,
  average: ExponentialMovingAverage | null,
  grads: tf.NamedTensorMap,
  { lr, k, clipNorm, emaDecay }: UpdateSettings,
): ProposedUpdate {
  const g = flatGradient(grads, adam.parameters);
  const norm = tf.tidy(() => tf.sqrt(tf.sum(tf.square(g)))) as tf.Scalar;
  return {
    norm,
    commit(gradNorm) {
      const clip = clipNorm !== null && gradNorm > clipNorm ? clipNorm / (gradNorm + 1e-6) : 1;
      tf.tidy(() => {
        const gk = (clip !== 1 ? tf.mul(g, clip) : g) as tf.Tensor1D;
        const theta = adam.update(gk, lr, k);
        average?.update(theta, emaDecay);
      });
      tf.dispose([g, norm]);
    },
    discard: () => tf.dispose([g, norm]),
  };
}

function fusedUpdate(
  adam: Adam,
  average: ExponentialMovingAverage | null,
  grads: tf.NamedTensorMap,
  { lr, k, clipNorm, emaDecay }: UpdateSettings,
): ProposedUpdate {
  const { beta1, beta2, epsilon, optimizer, weightDecay } = adam.options;
  const parameters = adam.parameters;
  // The scalars as the composite multiplies by them: each computed in double, then float32.
  const hyper = tf.tensor1d([
    beta1,
    1 - beta1,
    beta2,
    1 - beta2,
    1 - beta1 ** k,
    1 - beta2 ** k,
    epsilon,
    lr,
    weightDecay,
    lr * weightDecay,
    optimizer === "adamw" ? 1 : 0,
    // Without an EMA the op's average is m at decay 1, an output (m unchanged) that is dropped.
    average ? emaDecay : 1,
    average ? 1 - emaDecay : 0,
    clipNorm ?? -1, // < 0: no clipping
  ]);
  const outputs = tf.tidy(() => {
    const gradients = parameters.map((p) => grads[p.variable.name] ?? tf.zerosLike(p.variable));
    const inputs = [
      ...gradients,
      ...parameters.map((p) => p.variable),
      adam.m,
      adam.v,
      average?.average ?? adam.m,
      hyper,
    ];
    return tf.engine().runKernel(
      ADAM_STEP,
      inputs as unknown as tf.NamedTensorMap,
      { n: parameters.length },
    ) as tf.Tensor[];
  });
  hyper.dispose();
  const n = parameters.length;
  return {
    norm: outputs[n + 3] as tf.Scalar,
    commit() {
      parameters.forEach((p, i) => p.variable.assign(outputs[i]));
      adam.m.assign(outputs[n]);
      adam.v.assign(outputs[n + 1]);
      average?.replace(outputs[n + 2]);
      tf.dispose(outputs);
    },
    discard: () => tf.dispose(outputs),
  };
}
