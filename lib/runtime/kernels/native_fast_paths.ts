/**
 * Kernels of the native backend ("tensorflow", tfjs-node) whose shape operands are made once.
 *
 * Several TensorFlow ops take a shape or axis list as an int32 tensor input: Reshape's shape,
 * Sum's axes, the input or filter size of the convolution gradients, SplitV's sizes and axis,
 * ConcatV2's axis. tfjs-node builds that tensor on every call: a TensorFlow.js tensor, copied
 * into a TensorFlow tensor when the op runs, then disposed; a U-Net training step pays it about
 * 170 times. These kernels run the same ops on the same inputs, but pass each distinct shape
 * operand as a TensorFlow tensor created once and kept for the life of the process (a program
 * sees tens of distinct shapes, a few bytes each). Everything else about the op, and its
 * result, is unchanged.
 *
 * Also here: the kernels of the project's own ops, GroupNorm (+ SiLU), the Adam step, the
 * convolutions (forward at any stride and padding, the filter gradient, and a stride-1 layer's
 * whole backward; the input gradient otherwise runs as a forward convolution) and the attention
 * core, which stand in for TensorFlow's where the ops are loaded.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { conv2DBackpropInputAsConv, convGeometry } from "./conv_gradients.ts";
import {
  type FastPath,
  type KernelBackend,
  KernelRunner,
  registerFastPaths,
  replaceKernel,
} from "./registry.ts";
import { CONV2D, CONV2D_GRAD } from "../../core/nn/conv.ts";
import { ATTENTION, ATTENTION_GRAD } from "../../core/nn/attention.ts";
import { GROUP_NORM_SILU, GROUP_NORM_SILU_GRAD } from "../../core/nn/group_norm_silu.ts";
import { LINEAR, LINEAR_GRAD } from "../../core/nn/linear.ts";
import { projectOpsStatus } from "../native.ts";

/** What TensorFlow returns for an output of an op. */
interface OutputMetadata {
  id: number;
  shape: number[];
  dtype: number;
}

/** The part of tfjs-node's binding and NodeJSKernelBackend these kernels use. */
interface NodeBackend {
  binding: {
    createTensor(shape: number[], dtype: number, values: Int32Array): number;
    executeOp(name: string, attrs: OpAttr[], inputIds: number[], outputs: number): OutputMetadata[];
    TF_FLOAT: number;
    TF_INT32: number;
    TF_BOOL: number;
    TF_ATTR_TYPE: number;
    TF_ATTR_BOOL: number;
    TF_ATTR_INT: number;
    TF_ATTR_STRING: number;
    TF_ATTR_FLOAT: number;
  };
  getInputTensorIds(tensors: tf.TensorInfo[]): number[];
  incRef(dataId: object): void;
  createOutputTensor(metadata: OutputMetadata): tf.TensorInfo;
  tensorMap: { set(dataId: object, data: TensorData): void };
}

/** What tfjs-node's backend keeps for a tensor: its TensorFlow handle id, shape and type. */
interface TensorData {
  shape: number[];
  dtype: number;
  id: number;
  values: null;
  refCount: number;
}

interface OpAttr {
  name: string;
  type: number;
  value: unknown;
}

/** Int32 TensorFlow tensors by their values, made once each. */
const constants = new Map<string, number>();

/** The id of a TensorFlow int32 tensor holding `values` (a vector, or a scalar). */
function int32(backend: NodeBackend, values: number[], scalar = false): number {
  const key = `${scalar ? "s" : "v"}${values.join(",")}`;
  let id = constants.get(key);
  if (id === undefined) {
    const shape = scalar ? [] : [values.length];
    id = backend.binding.createTensor(shape, backend.binding.TF_INT32, Int32Array.from(values));
    constants.set(key, id);
  }
  return id;
}

function dtypeOf(backend: NodeBackend, dtype: tf.DataType): number {
  const { TF_FLOAT, TF_INT32, TF_BOOL } = backend.binding;
  const types: Partial<Record<tf.DataType, number>> = {
    float32: TF_FLOAT,
    int32: TF_INT32,
    bool: TF_BOOL,
  };
  const type = types[dtype];
  if (type === undefined) throw new Error(`no TensorFlow dtype for ${dtype}`);
  return type;
}

const typeAttr = (backend: NodeBackend, name: string, dtype: tf.DataType): OpAttr => ({
  name,
  type: backend.binding.TF_ATTR_TYPE,
  value: dtypeOf(backend, dtype),
});

/** Runs TensorFlow op `name` on `inputs`, tensors or ids of constants, in order. */
function execute(
  backend: NodeBackend,
  name: string,
  attrs: OpAttr[],
  inputs: (tf.TensorInfo | number)[],
  outputs = 1,
): tf.TensorInfo[] {
  const ids = inputs.map((input) =>
    typeof input === "number" ? input : backend.getInputTensorIds([input])[0]
  );
  return backend.binding.executeOp(name, attrs, ids, outputs).map((metadata) =>
    outputInfo(backend, metadata)
  );
}

/**
 * The tensor info of an op's output. tfjs-node's own `createOutputTensor` wraps each output in a
 * tracked Tensor, which the engine then wraps again when the kernel returns it; for the common
 * types this records the handle and returns the bare info (about 10 µs an output, on ops of
 * 25–60 µs).
 */
function outputInfo(backend: NodeBackend, metadata: OutputMetadata): tf.TensorInfo {
  const { TF_FLOAT, TF_INT32, TF_BOOL } = backend.binding;
  const type = metadata.dtype;
  const dtype: tf.DataType | undefined = type === TF_FLOAT
    ? "float32"
    : type === TF_INT32
    ? "int32"
    : type === TF_BOOL
    ? "bool"
    : undefined;
  if (dtype === undefined) return backend.createOutputTensor(metadata);
  const dataId = {};
  backend.tensorMap.set(dataId, { ...metadata, values: null, refCount: 1 });
  return { dataId, shape: metadata.shape, dtype };
}

/** The attributes tfjs-node gives both convolution gradients. */
function convGradientAttrs(backend: NodeBackend, info: tf.backend_util.Conv2DInfo): OpAttr[] {
  const { TF_ATTR_INT, TF_ATTR_STRING, TF_ATTR_BOOL } = backend.binding;
  return [
    typeAttr(backend, "T", "float32"),
    { name: "strides", type: TF_ATTR_INT, value: [1, info.strideHeight, info.strideWidth, 1] },
    { name: "padding", type: TF_ATTR_STRING, value: info.padInfo.type },
    { name: "data_format", type: TF_ATTR_STRING, value: "NHWC" },
    { name: "use_cudnn_on_gpu", type: TF_ATTR_BOOL, value: true },
    { name: "dilations", type: TF_ATTR_INT, value: [1, 1, 1, 1] },
  ];
}

/** Conv2D geometry as tfjs-node computes it, or undefined where its kernel would not apply. */
function convInfo(
  kernelName: string,
  xShape: number[],
  filterShape: number[],
  attrs: tf.NamedAttrMap,
): tf.backend_util.Conv2DInfo | undefined {
  if ((attrs as { dataFormat?: string }).dataFormat === "NCHW") return undefined;
  const info = convGeometry(kernelName, xShape, filterShape, attrs);
  return info.padInfo.type === "SAME" || info.padInfo.type === "VALID" ? info : undefined;
}

/**
 * Reshape: to the shape x already has (the gradients of broadcasting ops ask for that dozens of
 * times a step), x itself, shared as the cpu backend shares it; else TensorFlow's Reshape.
 */
const reshape: FastPath = () => ({ inputs, backend, attrs }) => {
  const b = backend as unknown as NodeBackend;
  const { x } = inputs as { x: tf.TensorInfo };
  const { shape } = attrs as unknown as { shape: number[] };
  if (shape.length === x.shape.length && shape.every((d, i) => d === x.shape[i])) {
    b.incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  }
  const attributes = [typeAttr(b, "T", x.dtype), typeAttr(b, "Tshape", "int32")];
  return execute(b, "Reshape", attributes, [x, int32(b, shape)])[0];
};

const sum: FastPath = () => ({ inputs, backend, attrs }) => {
  const b = backend as unknown as NodeBackend;
  const { x } = inputs as { x: tf.TensorInfo };
  const { axis, keepDims } = attrs as unknown as { axis: number | number[]; keepDims: boolean };
  const axes = tf.util.parseAxisParam(axis, x.shape);
  const attributes = [
    { name: "keep_dims", type: b.binding.TF_ATTR_BOOL, value: keepDims },
    typeAttr(b, "T", x.dtype),
    typeAttr(b, "Tidx", "int32"),
  ];
  return execute(b, "Sum", attributes, [x, int32(b, axes)])[0];
};

/** A convolution as the project's ops (lib/runtime/kernels/conv2d.c) take it. */
interface OwnConvolution {
  kernelHeight: number;
  kernelWidth: number;
  stride: number;
  /** [top, bottom, left, right]. */
  pads: [number, number, number, number];
}

/**
 * The geometry of a convolution that the project's own ops compute: NHWC, dilation 1, the same
 * stride both ways, padding of zero or more on each side ("same", "valid" or explicit), and a
 * multiple of 8 output channels; undefined for any other, which TensorFlow's kernels run.
 */
function ownConvolution(
  kernelName: string,
  xShape: number[],
  filterShape: number[],
  attrs: tf.NamedAttrMap,
): OwnConvolution | undefined {
  if (!projectOpsStatus().loaded) return undefined;
  const { dataFormat, dilations } = attrs as { dataFormat?: string; dilations?: number | number[] };
  if (dataFormat === "NCHW" || [dilations ?? 1].flat().some((d) => d !== 1)) return undefined;
  const [kh, kw, , co] = filterShape;
  const info = convGeometry(kernelName, xShape, filterShape, attrs);
  const { top, bottom, left, right } = info.padInfo;
  const pads: OwnConvolution["pads"] = [top, bottom, left, right];
  const stride = info.strideHeight;
  const fits = info.strideWidth === stride && pads.every((p) => p >= 0) && co % 8 === 0 &&
    info.outHeight === Math.floor((info.inHeight + top + bottom - kh) / stride) + 1 &&
    info.outWidth === Math.floor((info.inWidth + left + right - kw) / stride) + 1;
  return fits ? { kernelHeight: kh, kernelWidth: kw, stride, pads } : undefined;
}

/** The stride and padding attributes of the project's convolution ops. */
function convolutionAttrs(b: NodeBackend, conv: OwnConvolution): OpAttr[] {
  const int = (name: string, value: number) => ({ name, type: b.binding.TF_ATTR_INT, value });
  const [top, bottom, left, right] = conv.pads;
  return [
    int("stride", conv.stride),
    int("pad_top", top),
    int("pad_bottom", bottom),
    int("pad_left", left),
    int("pad_right", right),
  ];
}

/** y = conv(x, w) (+ bias) through the project's op; see {@link ownConvolution}. */
function ownConv2D(
  b: NodeBackend,
  conv: OwnConvolution,
  x: tf.TensorInfo,
  filter: tf.TensorInfo,
  bias?: tf.TensorInfo,
) {
  const attributes = [
    { name: "N", type: b.binding.TF_ATTR_INT, value: bias ? 1 : 0 },
    ...convolutionAttrs(b, conv),
  ];
  return execute(b, "DiffusionConv2D", attributes, bias ? [x, filter, bias] : [x, filter])[0];
}

const conv2D: FastPath = (stock) => (args) => {
  const { x, filter } = args.inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
  const conv = ownConvolution("Conv2D", x.shape, filter.shape, args.attrs ?? {});
  if (conv === undefined) return stock(args);
  return ownConv2D(args.backend as unknown as NodeBackend, conv, x, filter);
};

/** A fused convolution with a bias (or none) and no activation runs as the project's op. */
const fusedConv2D: FastPath = (stock) => (args) => {
  const { x, filter, bias, preluActivationWeights } = args.inputs as Record<
    string,
    tf.TensorInfo | undefined
  >;
  const { activation } = args.attrs as { activation?: string };
  const linear = (activation ?? "linear") === "linear" && !preluActivationWeights;
  const conv = linear
    ? ownConvolution("FusedConv2D", x!.shape, filter!.shape, args.attrs ?? {})
    : undefined;
  if (conv === undefined) return stock(args);
  return ownConv2D(args.backend as unknown as NodeBackend, conv, x!, filter!, bias);
};

/** An attribute of one of the project's ops, named as in the kernel's attributes too. */
interface ProjectOpAttr {
  name: string;
  type: "int" | "float" | "bool";
  /** Its value when the kernel's attributes leave it out. */
  otherwise?: number | boolean;
}

/**
 * The kernel that runs the project's op `op` (lib/runtime/kernels/*.c) on the kernel's inputs
 * named `inputs`, in that order, with the attributes `attrs` taken from the kernel's, and
 * returns its `outputs` outputs.
 */
function projectOpKernel(
  op: string,
  inputs: string[],
  outputs: number,
  attrs: ProjectOpAttr[],
): tf.KernelFunc {
  return ({ inputs: given, backend, attrs: values }) => {
    const b = backend as unknown as NodeBackend;
    const types = {
      int: b.binding.TF_ATTR_INT,
      float: b.binding.TF_ATTR_FLOAT,
      bool: b.binding.TF_ATTR_BOOL,
    };
    const attributes = attrs.map(({ name, type, otherwise }) => ({
      name,
      type: types[type],
      value: (values as Record<string, unknown>)?.[name] ?? otherwise,
    }));
    const operands = inputs.map((name) => (given as Record<string, tf.TensorInfo>)[name]);
    return execute(b, op, attributes as OpAttr[], operands, outputs);
  };
}

/** The fused attention core of lib/runtime/kernels/attention.c (lib/core/nn/attention.ts). */
const ATTENTION_ATTRS: ProjectOpAttr[] = [
  { name: "heads", type: "int" },
  { name: "batch", type: "int" },
];

const ATTENTION_KERNELS: tf.KernelConfig[] = [
  {
    kernelName: ATTENTION,
    backendName: "tensorflow",
    kernelFunc: projectOpKernel(ATTENTION, ["q", "k", "v"], 2, ATTENTION_ATTRS),
  },
  {
    kernelName: ATTENTION_GRAD,
    backendName: "tensorflow",
    kernelFunc: projectOpKernel(
      ATTENTION_GRAD,
      ["q", "k", "v", "probs", "dout"],
      3,
      ATTENTION_ATTRS,
    ),
  },
];

/** The attributes of a stride-1 "same" convolution, as TensorFlow.js's kernels take them. */
const SAME_CONVOLUTION = {
  strides: 1,
  pad: "same",
  dataFormat: "NHWC",
  dilations: 1,
  dimRoundingMode: undefined,
  activation: "linear",
} as unknown as tf.NamedAttrMap;

/**
 * The layer convolution of lib/core/nn/conv.ts: forward and backward each one op of the
 * project's where {@link ownConvolution} takes the shape (the backward also wants an odd square
 * filter and C_in a multiple of 8), else the backend's own kernels (the fused convolution; the
 * two gradients and a sum).
 */
const CONV2D_KERNELS: tf.KernelConfig[] = [
  {
    kernelName: CONV2D,
    backendName: "tensorflow",
    kernelFunc: ({ inputs, backend }) => {
      const { x, filter, bias } = inputs as Record<string, tf.TensorInfo>;
      const conv = ownConvolution(CONV2D, x.shape, filter.shape, SAME_CONVOLUTION);
      if (conv !== undefined) {
        return ownConv2D(backend as unknown as NodeBackend, conv, x, filter, bias);
      }
      const runner = new KernelRunner("tensorflow", backend as unknown as KernelBackend);
      return runner.run("FusedConv2D", { x, filter, bias }, SAME_CONVOLUTION);
    },
  },
  {
    kernelName: CONV2D_GRAD,
    backendName: "tensorflow",
    kernelFunc: ({ inputs, backend }) => {
      const { dy, x, filter } = inputs as Record<string, tf.TensorInfo>;
      const own = ownConvolution(CONV2D_GRAD, x.shape, filter.shape, SAME_CONVOLUTION);
      const [kh, kw, ci] = filter.shape;
      if (own !== undefined && kh === kw && kh % 2 === 1 && ci % 8 === 0) {
        return execute(backend as unknown as NodeBackend, "DiffusionConv2DGrad", [], [
          dy,
          x,
          filter,
        ], 3);
      }
      const runner = new KernelRunner("tensorflow", backend as unknown as KernelBackend);
      return [
        runner.run("Conv2DBackpropInput", { dy, filter }, {
          ...SAME_CONVOLUTION,
          inputShape: x.shape,
        }),
        runner.run("Conv2DBackpropFilter", { x, dy }, {
          ...SAME_CONVOLUTION,
          filterShape: filter.shape,
        }),
        runner.run("Sum", { x: dy }, { axis: [0, 1, 2], keepDims: false }),
      ];
    },
  },
];

const conv2DBackpropFilter: FastPath = (stock) => (args) => {
  const b = args.backend as unknown as NodeBackend;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const { filterShape } = args.attrs as unknown as { filterShape: number[] };
  const conv = ownConvolution("Conv2DBackpropFilter", x.shape, filterShape, args.attrs ?? {});
  if (conv !== undefined) {
    const attributes = [
      { name: "kernel_height", type: b.binding.TF_ATTR_INT, value: conv.kernelHeight },
      { name: "kernel_width", type: b.binding.TF_ATTR_INT, value: conv.kernelWidth },
      ...convolutionAttrs(b, conv),
    ];
    return execute(b, "DiffusionConv2DBackpropFilter", attributes, [x, dy])[0];
  }
  const info = convInfo("Conv2DBackpropFilter", x.shape, filterShape, args.attrs ?? {});
  if (info === undefined) return stock(args);
  const attributes = convGradientAttrs(b, info);
  return execute(b, "Conv2DBackpropFilter", attributes, [x, int32(b, info.filterShape), dy])[0];
};

/**
 * Below this many input channels, TensorFlow's own Conv2DBackpropInput is the faster one (the
 * forward convolution of dy would have that few output channels).
 */
const AS_CONV_MIN_CHANNELS = 16;

/**
 * The input gradient of a convolution. TensorFlow's CPU kernel for it takes 1.5 to 3.5 times as
 * long as the forward convolution it mirrors (measured on a 2-core EPYC at 64×16×16×64 to
 * 64×4×4×128): for a filter of 16 input channels or more it runs as that forward convolution of
 * dy with the filter flipped and transposed (conv_gradients.ts, the sub-pixel form at stride 2),
 * which gives the same sums in another order (relative difference ~4e-7).
 */
const conv2DBackpropInput: FastPath = (stock) => {
  const asConv = conv2DBackpropInputAsConv("tensorflow").kernelFunc;
  return (args) => {
    const b = args.backend as unknown as NodeBackend;
    const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const { inputShape } = args.attrs as unknown as { inputShape: number[] };
    const info = convInfo("Conv2DBackpropInput", inputShape, filter.shape, args.attrs ?? {});
    if (info === undefined) return stock(args);
    if (filter.shape[2] >= AS_CONV_MIN_CHANNELS) return asConv(args);
    const attributes = convGradientAttrs(b, info);
    return execute(b, "Conv2DBackpropInput", attributes, [int32(b, info.inShape), filter, dy])[0];
  };
};

const splitV: FastPath = () => ({ inputs, backend, attrs }) => {
  const b = backend as unknown as NodeBackend;
  const { x } = inputs as { x: tf.TensorInfo };
  const { numOrSizeSplits, axis } = attrs as unknown as {
    numOrSizeSplits: number | number[];
    axis: number | number[];
  };
  const along = tf.util.parseAxisParam(axis, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, along);
  const attributes = [
    { name: "num_split", type: b.binding.TF_ATTR_INT, value: sizes.length },
    typeAttr(b, "T", x.dtype),
    typeAttr(b, "Tlen", "int32"),
  ];
  const operands = [x, int32(b, sizes), int32(b, [along], true)];
  return execute(b, "SplitV", attributes, operands, sizes.length);
};

const concat: FastPath = (stock) => (args) => {
  const b = args.backend as unknown as NodeBackend;
  const tensors = args.inputs as unknown as tf.TensorInfo[];
  if (tensors.some((t) => t.dtype !== tensors[0].dtype)) return stock(args);
  const { axis } = args.attrs as unknown as { axis: number | number[] };
  const along = tf.util.parseAxisParam(axis, tensors[0].shape)[0];
  const attributes = [
    { name: "N", type: b.binding.TF_ATTR_INT, value: tensors.length },
    typeAttr(b, "Tidx", "int32"),
    typeAttr(b, "T", tensors[0].dtype),
  ];
  return execute(b, "ConcatV2", attributes, [...tensors, int32(b, [along], true)])[0];
};

/**
 * The project's fused GroupNorm + SiLU (lib/runtime/kernels/group_norm_silu.c, loaded by
 * lib/runtime/native.ts) as kernels: the forward op returns z and the statistics μ, r that the
 * backward op takes.
 */
const GROUP_NORM_ATTRS: ProjectOpAttr[] = [
  { name: "groups", type: "int" },
  { name: "epsilon", type: "float" },
  { name: "silu", type: "bool", otherwise: true },
];

const GROUP_NORM_KERNELS: tf.KernelConfig[] = [
  {
    kernelName: GROUP_NORM_SILU,
    backendName: "tensorflow",
    kernelFunc: projectOpKernel(
      "DiffusionGroupNormSiLU",
      ["x", "gamma", "beta"],
      3,
      GROUP_NORM_ATTRS,
    ),
  },
  {
    kernelName: GROUP_NORM_SILU_GRAD,
    backendName: "tensorflow",
    kernelFunc: projectOpKernel(
      "DiffusionGroupNormSiLUGrad",
      ["dz", "x", "gamma", "beta", "mean", "rstd"],
      3,
      GROUP_NORM_ATTRS,
    ),
  },
];

/**
 * The kernel name of the fused optimiser step (lib/runtime/kernels/adam_step.c): inputs are the
 * N gradients, the N parameters, m, v, the EMA's average (flat) and the 14 scalars `hyper`;
 * outputs the N new parameters, the new m, v and average, and ‖g‖. Attribute `n` = N.
 */
export const ADAM_STEP = "DiffusionAdamStep";

const ADAM_STEP_KERNEL: tf.KernelConfig = {
  kernelName: ADAM_STEP,
  backendName: "tensorflow",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const b = backend as unknown as NodeBackend;
    const { n } = attrs as unknown as { n: number };
    const operands = inputs as unknown as tf.TensorInfo[];
    const attributes = [{ name: "N", type: b.binding.TF_ATTR_INT, value: n }];
    return execute(b, ADAM_STEP, attributes, operands, n + 4);
  },
};

/** MatMul of 2-D operands, either transposed. */
function matMul2d(
  b: NodeBackend,
  x: tf.TensorInfo,
  y: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): tf.TensorInfo {
  const { TF_ATTR_BOOL } = b.binding;
  return execute(b, "MatMul", [
    { name: "transpose_a", type: TF_ATTR_BOOL, value: transposeA },
    { name: "transpose_b", type: TF_ATTR_BOOL, value: transposeB },
    typeAttr(b, "T", "float32"),
  ], [x, y])[0];
}

const dataFormat = (b: NodeBackend): OpAttr => ({
  name: "data_format",
  type: b.binding.TF_ATTR_STRING,
  value: "NHWC",
});

/** The 2-D affine map of lib/core/nn/linear.ts: y = x W + b, and ∂x, ∂W, ∂b. */
const LINEAR_KERNELS: tf.KernelConfig[] = [
  {
    kernelName: LINEAR,
    backendName: "tensorflow",
    kernelFunc: ({ inputs, backend }) => {
      const b = backend as unknown as NodeBackend;
      const { x, weight, bias } = inputs as Record<string, tf.TensorInfo>;
      const product = matMul2d(b, x, weight, false, false);
      const y = execute(b, "BiasAdd", [typeAttr(b, "T", "float32"), dataFormat(b)], [
        product,
        bias,
      ])[0];
      (backend as unknown as { disposeData(id: object): void }).disposeData(product.dataId);
      return y;
    },
  },
  {
    kernelName: LINEAR_GRAD,
    backendName: "tensorflow",
    kernelFunc: ({ inputs, backend }) => {
      const b = backend as unknown as NodeBackend;
      const { dy, x, weight } = inputs as Record<string, tf.TensorInfo>;
      return [
        matMul2d(b, dy, weight, false, true),
        matMul2d(b, x, dy, true, false),
        execute(b, "BiasAddGrad", [typeAttr(b, "T", "float32"), dataFormat(b)], [dy])[0],
      ];
    },
  },
];

/** The replacements, by kernel name. */
const FAST_PATHS: [string, FastPath][] = [
  ["Reshape", reshape],
  ["Sum", sum],
  ["Conv2D", conv2D],
  ["FusedConv2D", fusedConv2D],
  ["Conv2DBackpropFilter", conv2DBackpropFilter],
  ["Conv2DBackpropInput", conv2DBackpropInput],
  ["SplitV", splitV],
  ["Concat", concat],
];

/**
 * Registers these kernels for the "tensorflow" backend in place of tfjs-node's, and the fused
 * GroupNorm + SiLU when the project's ops are loaded (idempotent). Call it once tfjs-node's
 * kernels are registered.
 */
export function registerNativeFastPaths(): void {
  LINEAR_KERNELS.forEach(replaceKernel);
  if (projectOpsStatus().loaded) {
    [...GROUP_NORM_KERNELS, ADAM_STEP_KERNEL, ...CONV2D_KERNELS, ...ATTENTION_KERNELS].forEach(
      replaceKernel,
    );
  }
  registerFastPaths("tensorflow", FAST_PATHS);
}
