/**
 * The benchmark's parts that decide what it times and what it publishes, on fixed inputs: the
 * PyTorch ports of the zoo's network kinds, the rows the specs make, the busy/idle verdict and
 * the README's tables. Nothing here is timed.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { selectBackend } from "../lib/runtime/backend.ts";
import { MODEL_SPECS, type ModelSpec } from "../lib/zoo/specs.ts";
import { completeModelConfig, contextUnetConfig, createModel } from "../lib/core/models/mod.ts";
import {
  allZooNetworks,
  autoencoderNetworks,
  classifierNetworks,
  clipNetworks,
  missingPortError,
  zooNetworkName,
  zooNetworks,
} from "../scripts/bench/zoo.ts";
import { completeClassifierConfig, FeatureClassifier } from "../lib/core/models/classifier.ts";
import { TinyClip } from "../lib/core/models/clip.ts";
import { autoencoderConfig, AutoencoderKL } from "../lib/core/models/autoencoder.ts";
import { AUTOENCODER_SPECS, type AutoencoderSpec } from "../lib/zoo/autoencoder.ts";
import { readCheckpointHeader } from "../lib/training/checkpoint.ts";
import { artefactDir } from "../lib/zoo/runs.ts";
import {
  busyPath,
  busyVerdict,
  type LoadSample,
  otherCores,
  parseProcessStat,
  parseProcStat,
} from "../scripts/bench/load.ts";
import {
  type BenchReport,
  type BenchRow,
  type NetworkRow,
  README_BEGIN,
  README_END,
  readmeTables,
  replaceReadmeTables,
} from "../scripts/bench/tables.ts";

await selectBackend({ requested: "cpu", quiet: true });
const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
const SCRIPT = `${ROOT}/bench/reference_unet.py`;
const VENV_PYTHON = `${ROOT}/bench/.venv/bin/python`;
const venvReady = await Deno.stat(`${ROOT}/bench/.venv/.installed-requirements`).then(
  () => true,
  () => false,
);

/** Run bench/reference_unet.py with `args` (and `input` on stdin); its standard output as JSON. */
async function python(interpreter: string, args: string[], input = ""): Promise<unknown> {
  const child = new Deno.Command(interpreter, {
    args: [SCRIPT, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const out = await child.output();
  const text = new TextDecoder();
  assert.ok(out.success, `${SCRIPT} ${args.join(" ")} failed: ${text.decode(out.stderr)}`);
  return JSON.parse(text.decode(out.stdout));
}

/** The zoo's first spec with its network, batch or name replaced. */
function variant(
  name: string,
  network: Partial<ModelSpec["network"]["full"]>,
  batchSize?: number,
): ModelSpec {
  const spec = MODEL_SPECS.get("emoji16-unet")!;
  const full = { ...spec.network.full, ...network };
  return {
    ...spec,
    name,
    network: { quick: full, full },
    training: { ...spec.training, full: { ...spec.training.full, batchSize } },
  };
}

describe("the PyTorch ports (bench/reference_unet.py)", () => {
  it("exist for every network kind the zoo's specs use, and for the ContextUnet", async () => {
    const ports = await python("python3", ["--list-ports"]) as string[];
    for (const network of await allZooNetworks()) {
      assert.ok(
        ports.includes(network.kind),
        `${zooNetworkName(network)} is a "${network.kind}", which has no PyTorch port in ` +
          `bench/reference_unet.py (PORTS has ${ports.join(", ")}): add one`,
      );
    }
    assert.ok(ports.includes("contextUnet"));
    assert.ok(ports.includes("classifier"));
    assert.ok(ports.includes("clip"));
    assert.ok(ports.includes("autoencoderKL"));
  });

  it(
    "have exactly the parameters of createModel(config)",
    { skip: venvReady ? false : "bench/.venv is not set up (deno task bench creates it)" },
    async () => {
      const configs = [
        ...zooNetworks(MODEL_SPECS.values()).map((n) => n.config),
        // Paths no spec takes yet: a class-conditional U-Net with a learned null context and
        // dropout; the course's ContextUnet as it is and widened to 20×20 and ten classes.
        completeModelConfig({
          kind: "unet",
          baseChannels: 16,
          contextDim: 10,
          nullContext: "learned",
          dropout: 0.1,
        } as { kind: string }),
        // The text-conditional U-Net: cross-attention to 128-wide tokens at 8×8, 4×4, the middle.
        completeModelConfig({
          kind: "unet",
          channelMultipliers: [1, 2, 2],
          attentionResolutions: [4],
          middleAttention: true,
          crossAttentionDim: 128,
          crossAttentionResolutions: [8, 4],
          middleCrossAttention: true,
        } as { kind: string }),
        contextUnetConfig(),
        contextUnetConfig({ imageSize: 20, nFeat: 32, nCFeat: 10, nullContext: "learned" }),
      ];
      // The feature classifier as its artefact was built, and with other stages and heads.
      const classifiers = [
        ...(await classifierNetworks()).map((n) => n.config),
        completeClassifierConfig({
          channels: [8, 16],
          groups: 4,
          heads: [{ name: "a", classes: 3 }, { name: "b", classes: 5 }, { name: "c", classes: 2 }],
        }),
      ];
      const counts = await python(
        VENV_PYTHON,
        ["--count-parameters"],
        JSON.stringify([...configs, ...classifiers]),
      ) as number[];
      configs.forEach((config, i) => {
        const model = createModel(config);
        assert.equal(counts[i], model.parameterCount(), `the ${config.kind} port of ${i}`);
        model.dispose();
      });
      classifiers.forEach((config, i) => {
        const classifier = new FeatureClassifier(config);
        assert.equal(counts[configs.length + i], classifier.parameterCount(), `classifier ${i}`);
        classifier.dispose();
      });
      // The tiny CLIP as its artefact was built, and with one more text block and other widths.
      const [built] = await clipNetworks();
      const clips = [built.config, {
        ...built.config,
        image: { imageSize: 16, channels: [8, 16], groups: 4 },
        text: { ...built.config.text, width: 32, layers: 3, heads: 2, mlpRatio: 2 },
        embedDim: 24,
      }];
      const clipCounts = await python(
        VENV_PYTHON,
        ["--count-parameters"],
        JSON.stringify(clips),
      ) as number[];
      clips.forEach((config, i) => {
        const clip = new TinyClip(config);
        assert.equal(clipCounts[i], clip.parameterCount(), `tiny CLIP ${i}`);
        clip.dispose();
      });
      // The autoencoders of the zoo (f = 4, 2, 8), and paths no spec takes: two residual blocks
      // a level, no middle attention, other widths and latent channels, 16×16 images.
      const autoencoders = [
        ...autoencoderNetworks().map((n) => n.config),
        autoencoderConfig({
          imageSize: 16,
          baseChannels: 16,
          channelMultipliers: [1, 3],
          resBlocksPerLevel: 2,
          middleAttention: false,
          latentChannels: 8,
          groups: 4,
        }),
      ];
      const autoencoderCounts = await python(
        VENV_PYTHON,
        ["--count-parameters"],
        JSON.stringify(autoencoders),
      ) as number[];
      autoencoders.forEach((config, i) => {
        const autoencoder = new AutoencoderKL(config);
        assert.equal(autoencoderCounts[i], autoencoder.parameterCount(), `autoencoder ${i}`);
        autoencoder.dispose();
      });
    },
  );
});

describe("zooNetworks", () => {
  it("makes one row per network and batch of MODEL_SPECS, naming every spec of it", () => {
    const rows = zooNetworks(MODEL_SPECS.values());
    assert.deepEqual(
      rows.map((r) => [r.specs, r.kind, r.trainBatch, r.config.imageSize]),
      [
        [["emoji16-unet"], "unet", 32, 16],
        [["schedule16-linear", "schedule16-cosine"], "unet", 32, 16],
        [["class16-unet"], "unet", 32, 16],
        [["context16-unet"], "contextUnet", 32, 16],
        [["text16-unet"], "unet", 32, 16],
        [["emoji32-unet"], "unet", 32, 32],
        [["latent32-unet"], "unet", 32, 8],
      ],
    );
    assert.deepEqual(
      rows[0].config,
      completeModelConfig(MODEL_SPECS.get("emoji16-unet")!.network.full),
    );
  });

  it("shares a row between specs that differ only in seed, not in network or batch", () => {
    const base = MODEL_SPECS.get("emoji16-unet")!;
    const rows = zooNetworks([
      base,
      variant("reseeded", { seed: 5 }, 32),
      variant("larger-batch", {}, 64),
      variant("wider", { baseChannels: 64 }, 32),
      variant("course", { kind: "contextUnet" } as Partial<ModelSpec["network"]["full"]>, 32),
    ]);
    assert.deepEqual(rows.map((r) => r.specs), [
      ["emoji16-unet", "reseeded"],
      ["larger-batch"],
      ["wider"],
      ["course"],
    ]);
    assert.deepEqual(rows.map((r) => [r.kind, r.trainBatch]), [
      ["unet", 32],
      ["unet", 64],
      ["unet", 32],
      ["contextUnet", 32],
    ]);
    assert.equal(rows[0].emaDecay, base.training.full.emaDecay);
    assert.equal(rows[0].gradClipNorm, 1, "the trainer's default clip");
  });
});

describe("clipNetworks", () => {
  it("times the tiny CLIP as its artefact was built: the tokenizer's vocabulary, the spec's batch", async () => {
    const [network, ...others] = await clipNetworks();
    assert.equal(others.length, 0);
    assert.deepEqual(network.specs, ["tiny-clip"]);
    assert.equal(network.task, "contrastive");
    assert.equal(network.trainBatch, 128);
    assert.equal(network.config.text.contextLength, 16);
    assert.ok(network.config.text.vocabularySize > 1000, "the training captions' words");
    assert.equal(network.config.imageSize, 16);
  });
});

describe("autoencoderNetworks", () => {
  it("makes one row per network of AUTOENCODER_SPECS, at its full network and batch", () => {
    const rows = autoencoderNetworks();
    assert.deepEqual(
      rows.map((r) => [r.specs, r.task, r.kind, r.trainBatch, r.config.channelMultipliers]),
      [
        [["emoji32-vae-f4"], "reconstruction", "autoencoderKL", 16, [1, 2, 2]],
        [["emoji32-vae-f2"], "reconstruction", "autoencoderKL", 16, [1, 2]],
        [["emoji32-vae-f8"], "reconstruction", "autoencoderKL", 16, [1, 2, 2, 2]],
      ],
    );
    for (const row of rows) {
      assert.equal(row.config.imageSize, 32);
      assert.equal(row.config.baseChannels, 32);
      assert.equal(row.training.perceptualWeight, 1, "the recipe's; the workload sets w_p = 0");
    }
    const f4 = AUTOENCODER_SPECS.get("emoji32-vae-f4")!;
    const reseeded: AutoencoderSpec = {
      ...f4,
      name: "reseeded",
      network: { ...f4.network, full: { ...f4.network.full, seed: 3 } },
    };
    assert.deepEqual(autoencoderNetworks([f4, reseeded]).map((r) => r.specs), [[
      "emoji32-vae-f4",
      "reseeded",
    ]]);
  });

  it("reads from the spec the configuration its artefact records", async () => {
    for (const row of autoencoderNetworks()) {
      const path = `${artefactDir(row.specs[0], ROOT)}/weights.ckpt`;
      const header = await readCheckpointHeader(path).catch(() => undefined);
      if (header) assert.deepEqual(header.modelConfig, row.config, path);
    }
  });
});

describe("classifierNetworks", () => {
  it("times the classifier as its artefact was built: the data's heads, the spec's batch", async () => {
    const [network, ...others] = await classifierNetworks();
    assert.equal(others.length, 0, "the perceptual distance has no network of its own");
    assert.deepEqual(network.specs, ["emoji-classifier"]);
    assert.equal(network.task, "classification");
    assert.equal(network.trainBatch, 64);
    assert.deepEqual(network.config.heads.map((h) => h.classes), [9, 98]);
    assert.deepEqual(network.config.channels, [32, 64, 128]);
  });

  it("names the command that builds a missing artefact", async () => {
    const empty = await Deno.makeTempDir();
    try {
      await assert.rejects(
        classifierNetworks(undefined, empty),
        /cannot be read .*`deno task train emoji-classifier`/,
      );
    } finally {
      await Deno.remove(empty, { recursive: true });
    }
  });
});

describe("missingPortError", () => {
  it("names a kind without a port and where to add one, and passes when all have one", () => {
    const networks = zooNetworks([
      MODEL_SPECS.get("emoji16-unet")!,
      variant("course", { kind: "contextUnet" } as Partial<ModelSpec["network"]["full"]>, 32),
    ]);
    assert.equal(missingPortError(networks, ["unet", "contextUnet"]), undefined);
    const error = missingPortError(networks, ["unet"]);
    assert.match(error!.message, /kind "contextUnet" \(spec course\) has no pytorch port/);
    assert.match(error!.message, /add one to PORTS in bench\/reference_unet\.py/);
  });
});

describe("the busy/idle verdict", () => {
  const sample = (at: string, others?: number): LoadSample => ({
    at,
    seconds: 2,
    loadAverage: 1.5,
    ...(others === undefined ? {} : { otherCores: others }),
  });

  it("is idle when other processes stay within a quarter of the cores in every window", () => {
    const samples = [sample("before", 0.1), sample("16×16 round 1", 0.5), sample("after", 0)];
    assert.deepEqual(busyVerdict(samples, 2), { busy: false });
    assert.deepEqual(busyVerdict([sample("before")], 2), { busy: false }, "without /proc");
  });

  it("is busy, naming the windows worst first, when one exceeds it", () => {
    const samples = [sample("before", 0.2), sample("round 1", 0.7), sample("after", 1.1)];
    const verdict = busyVerdict(samples, 2);
    assert.equal(verdict.busy, true);
    assert.match(
      verdict.reason!,
      /more than 0\.5 of 2 cores \(1\.10 during after; 0\.70 during round 1\)/,
    );
    assert.equal(busyVerdict(samples, 2, 0.6).busy, false, "a looser share");
  });

  it("counts the CPU time of processes other than the benchmark's", () => {
    const stat = (user: number, idle: number) =>
      `cpu  ${user} 0 0 ${idle} 0 0 0 0 0 0\ncpu0 0 0 0 0\ncpu1 0 0 0 0\nintr 1\n`;
    const from = { machine: parseProcStat(stat(1000, 1000))!, ours: 500 };
    // 200 ticks in all over 2 CPUs: 150 busy, of which the benchmark's 100.
    const to = { machine: parseProcStat(stat(1150, 1050))!, ours: 600 };
    assert.deepEqual(from.machine, { busy: 1000, total: 2000, cpus: 2 });
    assert.equal(otherCores(from, to), 0.5);
    assert.equal(otherCores(from, { ...to, ours: 700 }), 0, "never below zero");
    assert.equal(parseProcStat("intr 1"), undefined);
    const process = "4242 (deno (main) x) S 1 4242 4242 0 -1 4194560 500 0 0 0 731 52 0 0 20 0 9";
    assert.equal(parseProcessStat(process), 783);
  });

  it("sends a busy run's report beside the output", () => {
    assert.equal(busyPath("/x/assets/bench/bench.json"), "/x/assets/bench/bench-busy.json");
    assert.equal(busyPath("/x/out"), "/x/out-busy");
  });
});

describe("the README's tables", () => {
  const times = (runtime: string, size: number, trainMs: number, sampleMs: number): BenchRow => ({
    size,
    runtime,
    detail: `${runtime} detail`,
    trainMs,
    sampleMs,
    trainImagesPerSecond: 0,
    sampleImagesPerSecond: 0,
    steps: 10,
    trainSamples: [],
    sampleSamples: [],
  });
  const network = (runtime: string, trainMs: number, sampleMs: number): NetworkRow => ({
    ...times(runtime, 16, trainMs, sampleMs),
    specs: ["schedule16-linear", "schedule16-cosine"],
    kind: "unet",
    parameters: 280_099,
    trainBatch: 32,
    sampleBatch: 64,
  });
  const report: BenchReport = {
    generated: "2026-12-01T10:00:00.000Z",
    profile: "full",
    busy: false,
    machine: { cpu: "Test CPU", cores: 2 },
    network: { parameters: 522_048, trainBatch: 32, sampleBatch: 64 },
    plan: { rounds: 5, steps: 2, warmup: 3 },
    load: { samples: [{ otherCores: 0.1 }, { otherCores: 0.25 }] },
    rows: [
      times("tfjs tensorflow", 16, 55.6, 24.8),
      times("pytorch", 16, 42.8, 47.7),
      times("tfjs tensorflow", 32, 166.5, 100.8),
      times("pytorch", 32, 184.3, 143.4),
      times("tfjs cpu", 16, 4533.4, 2740.7),
    ],
    networkRows: [network("tfjs tensorflow", 150, 40), network("pytorch", 100, 50)],
  };

  it("pivot the reference rows by size and name each zoo network's row", () => {
    const lines = readmeTables(report).split("\n");
    const rowOf = (start: string) => lines.find((l) => l.startsWith(start))!;
    assert.match(lines[0], /Measured 2026-12-01 on a 2-core Test CPU, medians of 10 steps/);
    assert.match(lines[0], /at most 0\.25 cores/);
    assert.match(
      lines.find((l) => l.startsWith("| runtime"))!,
      /16×16 train \| ÷ PyTorch \| 32×32 train \| ÷ PyTorch \| 16×16 DDIM/,
    );
    const cells = (line: string) => line.split("|").slice(1, -1).map((c) => c.trim());
    assert.deepEqual(cells(rowOf("| tfjs `tensorflow`")), [
      "tfjs `tensorflow`",
      "55.6 ms",
      "1.30×",
      "166.5 ms",
      "0.90×",
      "24.8 ms",
      "0.52×",
      "100.8 ms",
      "0.70×",
    ]);
    assert.deepEqual(cells(rowOf("| pytorch")), [
      "pytorch",
      "42.8 ms",
      "1",
      "184.3 ms",
      "1",
      "47.7 ms",
      "1",
      "143.4 ms",
      "1",
    ]);
    assert.deepEqual(cells(rowOf("| tfjs `cpu`")).slice(0, 4), [
      "tfjs `cpu`",
      "4,533 ms",
      "105.92×",
      "",
    ]);
    const zoo = lines.filter((l) => l.startsWith("| schedule16-linear, schedule16-cosine"));
    assert.deepEqual(zoo.map(cells), [
      [
        "schedule16-linear, schedule16-cosine",
        "unet",
        "280,099",
        "16×16",
        "32",
        "tfjs `tensorflow`",
        "150 ms",
        "1.50×",
        "40 ms",
        "0.80×",
      ],
      [
        "schedule16-linear, schedule16-cosine",
        "unet",
        "280,099",
        "16×16",
        "32",
        "pytorch",
        "100 ms",
        "1",
        "50 ms",
        "1",
      ],
    ]);
    assert.deepEqual(cells(lines.find((l) => l.startsWith("| network"))!), [
      "network",
      "kind",
      "parameters",
      "size",
      "batch",
      "runtime",
      "train step",
      "÷ PyTorch",
      "inference",
      "÷ PyTorch",
    ]);
    assert.ok(
      lines.includes("tfjs `tensorflow`: tfjs tensorflow detail; pytorch: pytorch detail."),
    );
  });

  it("replace only the marked block of the README, and refuse a busy run", () => {
    const readme = `# Title\n\n${README_BEGIN}\nold table\n${README_END}\n\nAfter.\n`;
    const written = replaceReadmeTables(readme, report);
    assert.ok(written.startsWith(`# Title\n\n${README_BEGIN}\n\nMeasured 2026-12-01`));
    assert.ok(written.endsWith(`\n\n${README_END}\n\nAfter.\n`));
    assert.ok(!written.includes("old table"));
    assert.equal(replaceReadmeTables(written, report), written, "idempotent");
    assert.throws(() => replaceReadmeTables("# no markers\n", report), /no block between/);
    assert.throws(() => readmeTables({ ...report, busy: true }), /busy machine/);
  });

  it("read the README's own block", async () => {
    const readme = await Deno.readTextFile(`${ROOT}/README.md`);
    assert.ok(readme.includes(README_BEGIN) && readme.includes(README_END));
  });
});
