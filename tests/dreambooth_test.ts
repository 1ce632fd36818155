import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { selectBackend } from "../lib/runtime/backend.ts";
import { Random } from "../lib/core/random.ts";
import { noiseSchedule } from "../lib/core/schedules.ts";
import { UNet } from "../lib/core/models/mod.ts";
import { Trainer, type TrainingData } from "../lib/training/trainer.ts";
import { TINY_UNET } from "./helpers.ts";

await selectBackend({ requested: "cpu", quiet: true });

const [L, D] = [3, 4];
const MODEL = {
  ...TINY_UNET,
  middleAttention: false,
  crossAttentionDim: D,
  crossAttentionResolutions: [4],
};
const schedule = noiseSchedule("linear", 100);

/** `count` random 8×8 images with random caption states, from `seed`. */
function images(count: number, seed: number): Omit<TrainingData, "prior"> {
  const rng = new Random(seed);
  return {
    images: Float32Array.from(rng.normals(count * 8 * 8 * 3), (v) => Math.tanh(v)),
    count,
    captionStates: {
      states: Float32Array.from(rng.normals(count * L * D)),
      length: L,
      width: D,
      nullStates: new Float32Array(L * D),
    },
  };
}

describe("DreamBooth's prior preservation: subject and class images in every batch", () => {
  it("draws batchSize of each and weighs the class images' loss by λ", async () => {
    const subject = images(3, 1);
    const prior = images(10, 2);
    const model = new UNet(MODEL);
    const trainer = new Trainer(model, { ...subject, prior }, schedule, {
      steps: 4,
      batchSize: 2,
      priorLossWeight: 0.5,
      horizontalFlip: false,
    }, { progress: false });
    for (let step = 0; step < 4; step++) {
      const indices = trainer.batchIndices(step);
      assert.equal(indices.length, 4);
      assert.ok(indices.slice(0, 2).every((i) => i < 3), `subject first: ${indices}`);
      assert.ok(indices.slice(2).every((i) => i >= 3 && i < 13), `then the prior: ${indices}`);
    }
    const result = await trainer.trainStep();
    const ps = result.perSampleLoss;
    assert.equal(ps.length, 4);
    const expected = (ps[0] + ps[1]) / 2 + 0.5 * (ps[2] + ps[3]) / 2;
    assert.ok(Math.abs(result.loss - expected) < 1e-5, `${result.loss} = ${expected}`);
    trainer.dispose();
    model.dispose();
  });

  it("resumes a prior-preserving run and refuses a prior conditioned otherwise", async () => {
    const dir = await Deno.makeTempDir();
    const data = { ...images(3, 1), prior: images(5, 2) };
    const model = new UNet(MODEL);
    const config = { steps: 4, batchSize: 2, checkpointPath: `${dir}/db.ckpt` };
    const trainer = new Trainer(model, data, schedule, config, { progress: false });
    await trainer.run({ until: 2 });
    await trainer.saveCheckpoint(`${dir}/db.ckpt.2`);
    await trainer.run();
    const resumed = await Trainer.resume(`${dir}/db.ckpt.2`, data, { progress: false });
    assert.equal(resumed.step, 2);
    const { losses } = await resumed.run();
    assert.deepEqual(losses, trainer.losses.slice(2), "the same batches after resuming");
    await assert.rejects(
      Trainer.resume(`${dir}/db.ckpt`, { ...data, prior: images(6, 2) }, { progress: false }),
      /trained on 8 images but 9 were given/,
    );
    const { captionStates: _, ...unconditioned } = images(5, 2);
    assert.throws(
      () => new Trainer(model, { ...data, prior: unconditioned }, schedule, {}, {}),
      /the training data has no captionStates/,
    );
    trainer.dispose();
    resumed.model.dispose();
    resumed.dispose();
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  });
});
