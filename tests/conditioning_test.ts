import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { Attention } from "../lib/core/nn/attention.ts";
import { ParameterStore } from "../lib/core/nn/layers.ts";
import { ContextUNet, createModel, type DiffusionModel, UNet } from "../lib/core/models/mod.ts";

await selectBackend({ requested: "cpu", quiet: true });

const COURSE_SMALL = { nFeat: 16, nCFeat: 5, seed: 2 } as const;

async function values(t: tf.Tensor): Promise<Float32Array> {
  const v = await t.data() as Float32Array;
  t.dispose();
  return v;
}

function maxDifference(a: Float32Array, b: Float32Array): number {
  return a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
}

/** ε_θ of a fixed batch of four images at fixed timesteps, under `conditioning`. */
function output(
  model: DiffusionModel,
  conditioning: Record<string, tf.Tensor>,
  training = false,
): tf.Tensor {
  return tf.tidy(() => {
    const x = tf.randomNormal([4, 16, 16, 3], 0, 1, "float32", 5) as tf.Tensor4D;
    return model.apply(x, tf.tensor1d([10, 200, 300, 499]), { ...conditioning, training });
  });
}

describe("conditioning as diffusers takes it: (x_t, t, { classLabels, encoderHiddenStates })", () => {
  it("classLabels y are the one-hot context c = onehot(y) of the course's ContextUnet", async () => {
    const model = new ContextUNet(COURSE_SMALL);
    const labels = tf.tensor1d([0, 3, 4, 1], "int32");
    const oneHot = tf.oneHot(labels, 5).toFloat() as tf.Tensor2D;
    const byLabel = await values(output(model, { classLabels: labels }));
    const byVector = await values(output(model, { context: oneHot }));
    assert.equal(maxDifference(byLabel, byVector), 0);
    tf.dispose([labels, oneHot]);
    model.dispose();
  });

  it("label −1 is the null context: zeros for the course, a learned vector when asked", async () => {
    const course = new ContextUNet(COURSE_SMALL);
    const none = tf.tensor1d([-1, -1, -1, -1], "int32");
    const zeros = tf.zeros([4, 5]) as tf.Tensor2D;
    assert.equal(
      maxDifference(
        await values(output(course, { classLabels: none })),
        await values(output(course, { context: zeros })),
      ),
      0,
    );
    assert.equal(
      maxDifference(
        await values(output(course, {})),
        await values(output(course, { context: zeros })),
      ),
      0,
      "no conditioning at all is the null context",
    );
    course.dispose();

    const learned = new ContextUNet({ ...COURSE_SMALL, nullContext: "learned" });
    const nullVector = learned.parameters.find((p) => p.name === "contextNull.vector")!;
    assert.ok(nullVector, "the learned null is a named parameter");
    assert.equal(learned.parameterCount(), new ContextUNet(COURSE_SMALL).parameterCount() + 5);
    nullVector.variable.assign(tf.tensor1d([0.5, -1, 2, 0, 1]));
    // In training mode (BatchNorm on batch statistics), as the null context is learned.
    const withNull = await values(output(learned, { classLabels: none }, true));
    const withZeros = await values(output(learned, { context: zeros }, true));
    assert.ok(maxDifference(withNull, withZeros) > 1e-3, "c_∅ changes the output");
    // Training reaches c_∅ through label −1 (as classifier-free guidance's label dropout does).
    const { grads } = tf.variableGrads(
      () => tf.mean(tf.square(output(learned, { classLabels: none }, true))) as tf.Scalar,
      [nullVector.variable],
    );
    const g = await values(grads[nullVector.variable.name]);
    assert.ok(g.some((v) => v !== 0), "the null vector gets a gradient");
    tf.dispose([none, zeros]);
    learned.dispose();
  });

  it("the U-Net takes class labels, and refuses conditioning it cannot use", async () => {
    const conditional = new UNet({ imageSize: 16, baseChannels: 8, contextDim: 3, seed: 1 });
    const labels = tf.tensor1d([0, 1, 2, -1], "int32");
    const oneHot = tf.tensor2d([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]);
    assert.equal(
      maxDifference(
        await values(output(conditional, { classLabels: labels })),
        await values(output(conditional, { context: oneHot })),
      ),
      0,
    );
    const tokens = tf.zeros([4, 7, 12]) as tf.Tensor3D;
    assert.throws(() => output(conditional, { encoderHiddenStates: tokens }), /cross-attention/);
    const unconditional = new UNet({ imageSize: 16, baseChannels: 8, seed: 1 });
    assert.throws(() => output(unconditional, { classLabels: labels }), /unconditional/);
    tf.dispose([labels, oneHot, tokens]);
    conditional.dispose();
    unconditional.dispose();
  });
});

describe("the U-Net with cross-attention to context tokens (a text encoder's states)", () => {
  const TEXT_UNET = {
    imageSize: 16,
    baseChannels: 8,
    channelMultipliers: [1, 2, 2],
    crossAttentionDim: 12,
    crossAttentionResolutions: [8, 4],
    middleCrossAttention: true,
    seed: 3,
  };

  it("cross-attends at the chosen resolutions and in the middle, and the tokens matter", async () => {
    const model = new UNet(TEXT_UNET);
    const names = model.parameters.map((p) => p.name);
    const has = (layer: string) => names.some((n) => n.startsWith(`${layer}.`));
    for (const layer of ["down.1.cross.0", "down.2.cross.1", "mid.cross.k", "up.1.cross.2"]) {
      assert.ok(has(layer), `${layer} is a cross-attention layer`);
    }
    assert.ok(!has("down.0.cross.0") && !has("up.0.cross.0"), "none at 16×16");
    const k = model.parameters.find((p) => p.name === "mid.cross.k.weight")!;
    assert.deepEqual(k.variable.shape, [12, 16], "keys project the tokens' width");
    // The output convolution starts at zero; give it weights so that the body shows.
    const out = model.parameters.find((p) => p.name === "output.conv.filter")!;
    out.variable.assign(tf.randomNormal(out.variable.shape, 0, 0.1, "float32", 1));
    const a = tf.randomNormal([4, 5, 12], 0, 1, "float32", 2) as tf.Tensor3D;
    const b = tf.randomNormal([4, 5, 12], 0, 1, "float32", 3) as tf.Tensor3D;
    const withA = await values(output(model, { encoderHiddenStates: a }));
    assert.equal(maxDifference(withA, await values(output(model, { encoderHiddenStates: a }))), 0);
    assert.ok(maxDifference(withA, await values(output(model, { encoderHiddenStates: b }))) > 1e-4);
    // A shorter or longer prompt is another L; every token width must be the network's.
    const long = tf.zeros([4, 9, 12]) as tf.Tensor3D;
    assert.equal(
      (await values(output(model, { encoderHiddenStates: long }))).length,
      4 * 16 * 16 * 3,
    );
    const wide = tf.zeros([4, 5, 7]) as tf.Tensor3D;
    assert.throws(
      () => output(model, { encoderHiddenStates: wide }),
      /encoderHiddenStates \[4, L, 12\]/,
    );
    assert.throws(() => output(model, {}), /the empty prompt's for no condition/);
    tf.dispose([a, b, long, wide]);
    model.dispose();
  });

  it("hands out each cross-attention layer's weights, rows summing to one, output unchanged", async () => {
    const model = new UNet(TEXT_UNET);
    const tokens = tf.randomNormal([4, 5, 12], 0, 1, "float32", 2) as tf.Tensor3D;
    const attentionMaps = new Map<string, tf.Tensor4D>();
    const x = tf.randomNormal([4, 16, 16, 3], 0, 1, "float32", 5) as tf.Tensor4D;
    const t = tf.tensor1d([1, 10, 100, 500]);
    const plain = await values(model.apply(x, t, { encoderHiddenStates: tokens }));
    const mapped = await values(model.apply(x, t, { encoderHiddenStates: tokens, attentionMaps }));
    assert.equal(maxDifference(plain, mapped), 0, "collecting maps changes nothing");
    const crossLayers = model.parameters.map((p) => p.name)
      .filter((name) => name.includes("cross") && name.endsWith(".q.weight"))
      .map((name) => name.slice(0, -".q.weight".length));
    assert.ok(crossLayers.length >= 5);
    assert.deepEqual([...attentionMaps.keys()].sort(), crossLayers.sort(), "one map a layer");
    const middle = attentionMaps.get("mid.cross")!;
    assert.deepEqual(middle.shape, [4, 4, 16, 5], "[N, heads, 4×4 pixels, 5 tokens]");
    const at8 = attentionMaps.get("down.1.cross.0")!;
    assert.deepEqual(at8.shape.slice(2), [64, 5], "8×8 pixels to 5 tokens");
    const sums = await values(tf.sum(at8, -1));
    assert.ok(sums.every((v) => Math.abs(v - 1) < 1e-5), "each pixel's weights sum to one");
    tf.dispose([...attentionMaps.values(), x, t, tokens]);
    model.dispose();
  });

  it("adds nothing to a network without it, and refuses a half-configured one", () => {
    const plain = new UNet({ imageSize: 16, baseChannels: 8, seed: 1 });
    assert.ok(!plain.parameters.some((p) => p.name.includes("cross")));
    plain.dispose();
    assert.throws(
      () => new UNet({ ...TEXT_UNET, crossAttentionDim: 0 }),
      /cross-attention needs crossAttentionDim/,
    );
    assert.throws(
      () => new UNet({ imageSize: 16, baseChannels: 8, crossAttentionDim: 12 }),
      /no resolution cross-attends/,
    );
  });
});

describe("attention with separate q, k, v and out, addressable by name", () => {
  it("names its projections q, k, v, out and attends to context tokens when built for them", async () => {
    const store = new ParameterStore(4);
    const self = new Attention(store, "mid.attn", 8, 2, 4);
    const cross = new Attention(store, "cross", 8, 2, 4, { contextDim: 6 });
    assert.deepEqual(
      store.parameters.filter((p) => p.name.startsWith("mid.attn.")).map((p) => p.name),
      [
        "mid.attn.norm.gamma",
        "mid.attn.norm.beta",
        "mid.attn.q.weight",
        "mid.attn.q.bias",
        "mid.attn.k.weight",
        "mid.attn.k.bias",
        "mid.attn.v.weight",
        "mid.attn.v.bias",
        "mid.attn.out.weight",
        "mid.attn.out.bias",
      ],
    );
    assert.deepEqual(cross.k.weight.shape, [6, 8]);
    const x = tf.randomNormal([2, 4, 4, 8], 0, 1, "float32", 1) as tf.Tensor4D;
    const ctx = { training: false, seed: 0 };
    const a = tf.randomNormal([2, 3, 6], 0, 1, "float32", 2) as tf.Tensor3D;
    const b = tf.randomNormal([2, 3, 6], 0, 1, "float32", 3) as tf.Tensor3D;
    const ya = await values(cross.apply(x, ctx, a));
    const yb = await values(cross.apply(x, ctx, b));
    assert.ok(maxDifference(ya, yb) > 1e-4, "the output depends on the context tokens");
    assert.throws(() => cross.apply(x, ctx), /cross-attention/);
    assert.throws(() => self.apply(x, ctx, a), /self-attention/);
    tf.dispose([x, a, b]);
    store.parameters.forEach((p) => p.variable.dispose());
  });
});

describe("the model registry", () => {
  it("builds every registered kind from its configuration and names the kinds it lacks", () => {
    const model = createModel(
      {
        kind: "contextUnet",
        imageSize: 16,
        inChannels: 3,
        seed: 0,
        nFeat: 16,
        nCFeat: 5,
        T: 500,
        nullContext: "zeros",
      } as never,
    );
    assert.ok(model instanceof ContextUNet);
    model.dispose();
    assert.throws(
      () => createModel({ kind: "vae", imageSize: 16, inChannels: 3, seed: 0 }),
      /unknown model kind "vae".*unet, contextUnet/,
    );
  });
});

describe("the U-Net's structure is recorded once", () => {
  it("reports each block's layers and parameters, adding up to the model's", () => {
    const model = new UNet({
      imageSize: 16,
      baseChannels: 8,
      channelMultipliers: [1, 2],
      resBlocksPerLevel: 1,
      attentionResolutions: [8],
      contextDim: 3,
      nullContext: "learned",
      seed: 1,
    });
    const architecture = model.architecture();
    const total = architecture.blocks.reduce((sum, b) => sum + b.parameters, 0);
    assert.equal(total, model.parameterCount());
    const summary = model.summary();
    assert.ok(summary.every((layer) => layer.block !== ""), "every layer belongs to a block");
    assert.equal(summary.find((l) => l.name === "output.norm")!.block, "output.conv");
    assert.equal(summary.find((l) => l.name === "down.1.attn.0.q")!.block, "down.1.attn.0");
    model.dispose();
  });
});
