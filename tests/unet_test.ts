import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../lib/runtime/backend.ts";
import { Random } from "../lib/core/random.ts";
import { GroupNorm, ParameterStore, silu } from "../lib/core/nn/layers.ts";
import {
  ContextUNet,
  contextUnet,
  type DiffusionModel,
  UNet,
  type UNetConfig,
  unetConfig,
} from "../lib/core/models/mod.ts";

await selectBackend({ requested: "wasm", quiet: true });

const TINY: Partial<UNetConfig> = {
  imageSize: 8,
  inChannels: 3,
  baseChannels: 8,
  channelMultipliers: [1, 2],
  resBlocksPerLevel: 1,
  attentionResolutions: [4],
  attentionHeads: 2,
  groups: 4,
  dropout: 0.1,
  contextDim: 5,
  seed: 1,
};

/**
 * Parameters of a U-Net counted from the architecture's definition, independently of the
 * implementation: conv k×k (k²·in·out + out), linear (in·out + out), GroupNorm (2C).
 */
function expectedUNetParameters(c: UNetConfig): number {
  const conv = (k: number, i: number, o: number) => k * k * i * o + o;
  const linear = (i: number, o: number) => i * o + o;
  const norm = (ch: number) => 2 * ch;
  const e = c.timeEmbeddingDim;
  const res = (i: number, o: number) =>
    norm(i) + conv(3, i, o) + linear(e, o) + norm(o) + conv(3, o, o) +
    (i === o ? 0 : conv(1, i, o));
  const attention = (ch: number) => norm(ch) + linear(ch, 3 * ch) + linear(ch, ch);
  let total = linear(c.baseChannels, e) + linear(e, e);
  if (c.contextDim > 0) total += linear(c.contextDim, e) + linear(e, e);
  total += conv(3, c.inChannels, c.baseChannels);
  const skips = [c.baseChannels];
  let ch = c.baseChannels;
  const levels = c.channelMultipliers.length;
  for (let l = 0; l < levels; l++) {
    const out = c.baseChannels * c.channelMultipliers[l];
    const attn = c.attentionResolutions.includes(c.imageSize >> l);
    for (let b = 0; b < c.resBlocksPerLevel; b++) {
      total += res(ch, out) + (attn ? attention(out) : 0);
      ch = out;
      skips.push(ch);
    }
    if (l < levels - 1) {
      total += conv(3, ch, ch);
      skips.push(ch);
    }
  }
  total += 2 * res(ch, ch) + (c.middleAttention ? attention(ch) : 0);
  for (let l = levels - 1; l >= 0; l--) {
    const out = c.baseChannels * c.channelMultipliers[l];
    const attn = c.attentionResolutions.includes(c.imageSize >> l);
    for (let b = 0; b <= c.resBlocksPerLevel; b++) {
      total += res(ch + skips.pop()!, out) + (attn ? attention(out) : 0);
      ch = out;
    }
    if (l > 0) total += conv(3, ch, ch);
  }
  return total + norm(ch) + conv(3, ch, c.outChannels);
}

function gradientNorms(model: DiffusionModel, context?: tf.Tensor2D): Map<string, number> {
  const rng = new Random(2);
  const x = tf.tensor4d(rng.normals(2 * 8 * 8 * 3), [2, 8, 8, 3]);
  const target = tf.tensor4d(rng.normals(2 * 8 * 8 * 3), [2, 8, 8, 3]);
  const t = tf.tensor1d([3, 70]);
  const { value, grads } = tf.variableGrads(
    () =>
      tf.mean(
        tf.squaredDifference(model.apply(x, t, { context, training: true, seed: 5 }), target),
      ) as tf.Scalar,
    model.parameters.map((p) => p.variable),
  );
  const norms = new Map<string, number>();
  for (const p of model.parameters) {
    const g = grads[p.variable.name];
    norms.set(p.name, g ? tf.tidy(() => tf.norm(g).dataSync()[0]) : 0);
  }
  tf.dispose([x, target, t, value, ...Object.values(grads)]);
  return norms;
}

describe("fused GroupNorm + SiLU", () => {
  it("equals SiLU(GroupNorm(x)) in value and in every gradient", () => {
    const norm = new GroupNorm(new ParameterStore(4), "gn", 12, 3);
    const rng = new Random(6);
    norm.gamma.assign(tf.tensor1d(rng.normals(12)));
    norm.beta.assign(tf.tensor1d(rng.normals(12)));
    const x = tf.add(tf.tensor4d(rng.normals(2 * 5 * 5 * 12), [2, 5, 5, 12]), 3) as tf.Tensor4D;
    const weights = tf.tensor4d(rng.normals(2 * 5 * 5 * 12), [2, 5, 5, 12]);
    const loss = (f: (x: tf.Tensor4D) => tf.Tensor) => (input: tf.Tensor) =>
      tf.sum(tf.mul(f(input as tf.Tensor4D), weights)) as tf.Scalar;
    const fused = loss((v) => norm.applySiLU(v));
    const plain = loss((v) => silu(norm.apply(v)));
    const close = (a: tf.Tensor, b: tf.Tensor, what: string) => {
      const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
      assert.ok(diff < 2e-5, `${what}: max difference ${diff}`);
    };
    close(norm.applySiLU(x), silu(norm.apply(x)), "value");
    close(tf.grad(fused)(x), tf.grad(plain)(x), "∂x");
    const params = [norm.gamma, norm.beta];
    const a = tf.variableGrads(() => fused(x), params).grads;
    const b = tf.variableGrads(() => plain(x), params).grads;
    close(a[norm.gamma.name], b[norm.gamma.name], "∂γ");
    close(a[norm.beta.name], b[norm.beta.name], "∂β");
  });
});

describe("UNet", () => {
  it("maps x_t to a tensor of its own shape, for several configurations", () => {
    for (
      const config of [TINY, {
        ...TINY,
        channelMultipliers: [1, 2, 2],
        resBlocksPerLevel: 2,
        contextDim: 0,
      }]
    ) {
      const model = new UNet(config);
      const x = tf.zeros([3, 8, 8, 3]) as tf.Tensor4D;
      const y = model.apply(x, tf.tensor1d([0, 10, 999]));
      assert.deepEqual(y.shape, [3, 8, 8, 3]);
      tf.dispose([x, y]);
      model.dispose();
    }
  });

  it("has exactly the parameters the architecture's formula counts", () => {
    const configs: Partial<UNetConfig>[] = [
      TINY,
      {
        ...TINY,
        channelMultipliers: [1, 2, 4],
        resBlocksPerLevel: 2,
        attentionResolutions: [8, 2],
        contextDim: 0,
      },
      {
        imageSize: 16,
        baseChannels: 32,
        channelMultipliers: [1, 2, 2],
        resBlocksPerLevel: 2,
        attentionResolutions: [8],
      },
    ];
    for (const partial of configs) {
      const model = new UNet(partial);
      assert.equal(model.parameterCount(), expectedUNetParameters(unetConfig(partial)));
      model.dispose();
    }
    // worked by hand: embeddings 2,592, input conv 224, encoder 7,376, middle 11,584,
    // decoder 24,496, output 235
    const tiny = new UNet(TINY);
    assert.equal(tiny.parameterCount(), 46_507);
    tiny.dispose();
  });

  it("outputs exactly zero at initialisation (zero-initialised output convolution)", () => {
    const model = new UNet(TINY);
    const x = tf.tensor4d(new Random(4).normals(2 * 8 * 8 * 3), [2, 8, 8, 3]);
    const y = model.apply(x, tf.tensor1d([5, 500]), {
      context: tf.oneHot([0, 3], 5).toFloat() as tf.Tensor2D,
    });
    assert.ok(y.dataSync().every((v) => v === 0));
    tf.dispose([x, y]);
    model.dispose();
  });

  it("passes gradients to every parameter", () => {
    const model = new UNet(TINY);
    // The zero output layer blocks every gradient behind it at initialisation; give it weights.
    const out = model.parameters.find((p) => p.name === "output.conv.filter")!.variable;
    out.assign(tf.tensor(new Random(8).normals(out.size), out.shape).mul(0.1));
    const norms = gradientNorms(model, tf.oneHot([1, 4], 5).toFloat() as tf.Tensor2D);
    const dead = [...norms].filter(([, n]) => !(n > 0 && Number.isFinite(n))).map(([name]) => name);
    assert.deepEqual(dead, []);
    assert.equal(norms.size, model.parameters.length);
    model.dispose();
  });

  it("summarises every layer and describes its architecture with consistent skip edges", () => {
    const model = new UNet(TINY);
    const rows = model.summary();
    assert.equal(rows.reduce((s, r) => s + r.params, 0), model.parameterCount());
    assert.deepEqual(rows.find((r) => r.name === "output.conv")!.outputShape, [1, 8, 8, 3]);
    assert.deepEqual(rows.find((r) => r.name === "down.0.downsample.conv")!.outputShape, [
      1,
      4,
      4,
      8,
    ]);
    assert.deepEqual(rows.find((r) => r.name === "input.conv")!.shape, [3, 3, 3, 8]);
    const arch = model.architecture();
    const blocks = new Map(arch.blocks.map((b) => [b.id, b]));
    const decoderRes = arch.blocks.filter((b) => b.path === "decoder" && b.kind === "resblock");
    const skips = arch.edges.filter((e) => e.kind === "skip");
    assert.equal(skips.length, decoderRes.length);
    for (const edge of skips) {
      const from = blocks.get(edge.from)!;
      const to = blocks.get(edge.to)!;
      assert.equal(from.resolution, to.resolution, `${edge.from} → ${edge.to}`);
      assert.equal(from.path === "encoder" || from.path === "stem", true);
    }
    assert.deepEqual(arch.levels.map((l) => [l.resolution, l.channels]), [[8, 8], [4, 16]]);
    assert.equal(arch.parameterCount, model.parameterCount());
    model.dispose();
  });

  it("rejects impossible configurations with a reason", () => {
    assert.throws(
      () => unetConfig({ imageSize: 12, channelMultipliers: [1, 2, 2, 2] }),
      /cannot be halved 3 times/,
    );
    assert.throws(() => unetConfig({ baseChannels: 12, groups: 8 }), /not divisible by groups/);
  });
});

describe("ContextUNet (the course's network)", () => {
  it("has the course's 1,480,771 parameters plus the 256 of its now-trained input shortcut", () => {
    const model = contextUnet();
    // PyTorch counts 1,480,771 for ContextUnet(3, n_feat=64, n_cfeat=5, height=16): its 1×1
    // shortcut (3·64 + 64 = 256 parameters) is created inside forward() and never registered.
    assert.equal(model.parameterCount(), 1_480_771 + 256);
    assert.equal(model.parameters.filter((p) => p.name.includes("shortcut")).length, 2);
    model.dispose();
  });

  it("computes what the course's PyTorch module computes with the same weights", () => {
    // Reference values from PyTorch 2.13 (ContextUnet with the shortcut as a module, weights
    // copied from this model), in eval mode (running statistics) and train mode (batch ones).
    const model = new ContextUNet({ nFeat: 16, nCFeat: 5, imageSize: 16, T: 500, seed: 3 });
    const x = tf.tensor4d(new Random(9).normals(2 * 16 * 16 * 3), [2, 16, 16, 3]);
    const t = tf.tensor1d([10, 400]);
    const context = tf.tensor2d([1, 0, 0, 0, 0, 0, 0, 1, 0, 0], [2, 5]);
    const at = [0, 1, 2, 100, 500, 767, 768, 1000, 1535];
    const expected = {
      eval: [
        -0.322944,
        -0.184541,
        0.191432,
        0.606693,
        -0.824729,
        0.651503,
        -0.479335,
        -0.73011,
        0.296498,
      ],
      train: [
        -0.223168,
        -0.197167,
        0.139242,
        0.133206,
        -0.10592,
        0.307149,
        -0.171693,
        -0.190992,
        0.111398,
      ],
    };
    for (const mode of ["eval", "train"] as const) {
      const y = model.apply(x, t, { context, training: mode === "train" });
      const values = y.dataSync();
      at.forEach((i, k) =>
        assert.ok(Math.abs(values[i] - expected[mode][k]) < 1e-4, `${mode} [${i}]: ${values[i]}`)
      );
      y.dispose();
    }
    tf.dispose([x, t, context]);
    model.dispose();
  });

  it("passes gradients to every parameter, the shortcut included", () => {
    const model = new ContextUNet({ nFeat: 8, nCFeat: 5, imageSize: 16 });
    const rng = new Random(2);
    const x = tf.tensor4d(rng.normals(2 * 16 * 16 * 3), [2, 16, 16, 3]);
    const { value, grads } = tf.variableGrads(
      () =>
        tf.mean(
          tf.square(
            model.apply(x, tf.tensor1d([1, 2]), {
              training: true,
              context: tf.oneHot([0, 2], 5).toFloat() as tf.Tensor2D,
            }),
          ),
        ) as tf.Scalar,
      model.parameters.map((p) => p.variable),
    );
    const dead = model.parameters.filter((p) => {
      const g = grads[p.variable.name];
      return !g || !(tf.tidy(() => tf.norm(g).dataSync()[0]) > 0);
    }).map((p) => p.name);
    assert.deepEqual(dead, []);
    tf.dispose([x, value, ...Object.values(grads)]);
    model.dispose();
  });

  it("describes its architecture and rejects sizes its pooling cannot handle", () => {
    const model = new ContextUNet({ nFeat: 8 });
    const arch = model.architecture();
    assert.deepEqual(arch.edges.filter((e) => e.kind === "skip").map((e) => `${e.from}→${e.to}`), [
      "down2→up1",
      "down1→up2",
      "initConv→out",
    ]);
    assert.equal(model.summary().reduce((s, r) => s + r.params, 0), model.parameterCount());
    model.dispose();
    assert.throws(() => new ContextUNet({ imageSize: 32 }), /imageSize 32 is not supported/);
  });
});
