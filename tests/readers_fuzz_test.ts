/**
 * Fuzzing the readers of files a user can damage: checkpoints, artefact manifests and metrics.
 * Thousands of random truncations, byte flips and header edits (some with the checksum made
 * right again, so that the layout checks behind it are reached) each end in a clear error that
 * names the file, or in a well-formed result; never in a crash, a hang or a huge allocation.
 *
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Random } from "../lib/core/random.ts";
import {
  type Checkpoint,
  crc32,
  decodeCheckpoint,
  encodeCheckpoint,
} from "../lib/training/checkpoint.ts";
import { readManifest } from "../lib/zoo/manifest.ts";
import { readMetrics } from "../lib/zoo/artefacts.ts";

const SOURCE = "fuzz.ckpt";

function checkpoint(): Checkpoint {
  return {
    step: 7,
    modelConfig: { kind: "unet", imageSize: 8, inChannels: 3 } as Checkpoint["modelConfig"],
    state: { rngState: 99, trainConfig: { steps: 10 } },
    tensors: new Map([
      ["params/w", { shape: [3, 4], values: Float32Array.from({ length: 12 }, (_, i) => i / 7) }],
      ["params/b", { shape: [4], values: Float32Array.of(1, -2, 3, -4) }],
      ["ema/w", { shape: [2, 2, 3], values: new Float32Array(12).fill(0.5) }],
    ]),
  };
}

/** Rewrites the header of checkpoint bytes and makes the length field and checksum right. */
function withHeader(
  bytes: Uint8Array,
  edit: (header: Record<string, unknown>) => void,
): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + length)));
  edit(header);
  const payload = bytes.subarray((12 + length + 7) & ~7, bytes.length - 4);
  const text = new TextEncoder().encode(JSON.stringify(header));
  const start = (12 + text.length + 7) & ~7;
  const out = new Uint8Array(start + payload.length + 4);
  out.set(bytes.subarray(0, 8));
  new DataView(out.buffer).setUint32(8, text.length, true);
  out.set(text, 12);
  out.set(payload, start);
  return sealed(out);
}

/** Bytes with their trailing CRC-32 recomputed. */
function sealed(bytes: Uint8Array): Uint8Array {
  new DataView(bytes.buffer).setUint32(bytes.length - 4, crc32(bytes.subarray(0, -4)), true);
  return bytes;
}

const STRANGE: unknown[] = [
  -1,
  1e12,
  2 ** 53,
  0.5,
  "12",
  null,
  [],
  {},
  [1e9, 1e9],
  Number.MAX_SAFE_INTEGER,
];

function mutate(base: Uint8Array, rng: Random): Uint8Array {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rng.uniform() * xs.length)];
  const kind = Math.floor(rng.uniform() * 5);
  if (kind === 0) return base.slice(0, Math.floor(rng.uniform() * base.length));
  const bytes = base.slice();
  if (kind === 1 || kind === 2) {
    const flips = 1 + Math.floor(rng.uniform() * 4);
    for (let i = 0; i < flips; i++) {
      bytes[Math.floor(rng.uniform() * bytes.length)] ^= 1 << Math.floor(rng.uniform() * 8);
    }
    return kind === 2 ? sealed(bytes) : bytes; // 2: the damage is not caught by the checksum
  }
  if (kind === 3) {
    // One character of the header replaced, the checksum made right again.
    const length = new DataView(bytes.buffer).getUint32(8, true);
    bytes[12 + Math.floor(rng.uniform() * length)] = 32 + Math.floor(rng.uniform() * 95);
    return sealed(bytes);
  }
  return withHeader(base, (header) => {
    const tensors = header.tensors as Record<string, unknown>[];
    const entry = pick(tensors);
    const field = pick([
      "shape",
      "offset",
      "byteLength",
      "dtype",
      "name",
      "payloadBytes",
      "tensors",
      "step",
      "state",
      "modelConfig",
      "shapeItem",
    ]);
    const value = pick(STRANGE);
    if (field === "payloadBytes" || field === "tensors" || field === "step") header[field] = value;
    else if (field === "state" || field === "modelConfig") header[field] = value;
    else if (field === "shapeItem") (entry.shape as unknown[])[0] = value;
    else entry[field] = value;
  });
}

describe("the readers of damaged files", () => {
  it("checkpoints: 4000 mutations, each a clear error naming the file or a well-formed result", () => {
    const base = encodeCheckpoint(checkpoint());
    const half = encodeCheckpoint(checkpoint(), { dtype: "float16" });
    const rng = new Random(2024);
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 4000; i++) {
      const bytes = mutate(i % 2 ? base : half, rng);
      let outcome: string;
      try {
        const decoded = decodeCheckpoint(bytes, SOURCE);
        for (const [name, t] of decoded.tensors) {
          assert.equal(t.values.length, t.shape.reduce((a, b) => a * b, 1), name);
        }
        outcome = "read";
      } catch (error) {
        assert.ok(error instanceof Error, `a non-Error was thrown: ${error}`);
        assert.ok(
          error.message.startsWith(SOURCE),
          `mutation ${i}: the error does not name the file: ${error.message}`,
        );
        outcome = error.message.slice(SOURCE.length + 1).split(/[:(]/)[0].trim();
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    // Every kind of damage was met and told apart.
    for (const kind of ["is truncated", "is corrupt", "is not a diffusion checkpoint"]) {
      assert.ok(
        [...outcomes.keys()].some((k) => k.startsWith(kind)),
        `${kind}: ${[...outcomes.keys()]}`,
      );
    }
  });

  it("a flipped byte of the header's format name is reported as damage, not as another format", () => {
    const bytes = encodeCheckpoint(checkpoint());
    const at = new TextDecoder().decode(bytes).indexOf("diffusion-checkpoint") + 14;
    bytes[at] ^= 0x01;
    assert.throws(() => decodeCheckpoint(bytes, SOURCE), /fuzz\.ckpt is corrupt: CRC-32/);
  });

  it("manifests and metrics: truncations and flips end in an error naming the file, or a valid record", async () => {
    const dir = await Deno.makeTempDir({ prefix: "fuzz-" });
    const manifest = await Deno.readTextFile("assets/models/emoji16-unet/manifest.json");
    const metrics = (await Deno.readTextFile("assets/models/emoji16-unet/metrics.jsonl"))
      .split("\n").slice(0, 20).join("\n");
    const rng = new Random(7);
    const damage = (text: string) => {
      const bytes = new TextEncoder().encode(text);
      if (rng.uniform() < 0.5) return bytes.slice(0, Math.floor(rng.uniform() * bytes.length));
      for (let k = 0; k < 3; k++) bytes[Math.floor(rng.uniform() * bytes.length)] ^= 1 << (k * 3);
      return bytes;
    };
    for (let i = 0; i < 300; i++) {
      await Deno.writeFile(`${dir}/manifest.json`, damage(manifest));
      try {
        const read = await readManifest(dir);
        assert.equal(typeof read?.specHash, "string");
      } catch (error) {
        assert.ok(error instanceof Error && error.message.startsWith(`${dir}/manifest.json`));
      }
      await Deno.writeFile(`${dir}/metrics.jsonl`, damage(metrics));
      try {
        for (const record of await readMetrics(`${dir}/metrics.jsonl`)) {
          assert.ok(Number.isFinite(record.step));
        }
      } catch (error) {
        assert.ok(error instanceof Error && error.message.startsWith(`${dir}/metrics.jsonl:`));
      }
    }
    await Deno.remove(dir, { recursive: true });
  });
});
