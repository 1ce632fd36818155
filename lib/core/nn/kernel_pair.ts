/**
 * A differentiable op made of one backend kernel each way, the form of the project's own ops
 * (the 2-D affine map, the layer convolution, GroupNorm + SiLU, the attention core): the forward
 * kernel maps the named inputs to the value (and, after it, whatever the backward needs that the
 * forward computed, such as GroupNorm's statistics or attention's probabilities); the backward
 * kernel takes the value's gradient, the inputs it needs and those extra outputs, and returns the
 * gradient of every input, in the inputs' order.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/** The two kernels and how their inputs are named. */
export interface KernelPair {
  /** The forward kernel's name. */
  forward: string;
  /** The backward kernel's name. */
  backward: string;
  /** The forward kernel's input names, in the op's argument order. */
  inputs: readonly string[];
  /** The inputs the backward kernel takes, under the same names. */
  saved: readonly string[];
  /** Names under which the backward kernel takes the forward's outputs after the value. */
  extraOutputs?: readonly string[];
  /** The backward kernel's name for the value's gradient. */
  gradient: string;
}

/**
 * The op of `pair` applied to `args` (in `pair.inputs`' order), with the kernels' attributes
 * `attrs`; its gradient is the backward kernel's.
 */
export function applyKernelPair(
  pair: KernelPair,
  args: readonly tf.Tensor[],
  attrs: tf.NamedAttrMap = {},
): tf.Tensor {
  const extras = pair.extraOutputs ?? [];
  const named = (names: readonly string[], tensors: readonly tf.Tensor[]) =>
    Object.fromEntries(names.map((name, i) => [name, tensors[i]]));
  const op = tf.customGrad((...given: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const inputs = named(pair.inputs, given as tf.Tensor[]);
    const save = given[pair.inputs.length] as tf.GradSaveFunc;
    const [value, ...rest] = [tf.engine().runKernel(pair.forward, inputs, attrs)].flat();
    save([...pair.saved.map((name) => inputs[name]), ...rest]);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) =>
      tf.engine().runKernel(pair.backward, {
        ...named([...pair.saved, ...extras], saved),
        [pair.gradient]: dy,
      }, attrs) as tf.Tensor[];
    return { value, gradFunc };
  });
  return op(...args);
}
