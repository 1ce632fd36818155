import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  BACKEND_ENV,
  BACKEND_NAMES,
  backendFromArgs,
  classifyAdapter,
  describeReport,
  selectBackend,
  WEBGPU_ALLOW_SOFTWARE_ENV,
} from "../lib/runtime/backend.ts";

/** Runs `body` with environment variables set (undefined: unset), then restores them. */
async function withEnv<T>(vars: Record<string, string | undefined>, body: () => Promise<T>) {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
  };
  apply(vars);
  try {
    return await body();
  } finally {
    apply(saved);
  }
}

describe("backendFromArgs", () => {
  it("reads --backend NAME and --backend=NAME, the last one winning", () => {
    assert.equal(backendFromArgs(["--backend", "wasm"]), "wasm");
    assert.equal(backendFromArgs(["x.ts", "--backend=cpu", "--steps", "3"]), "cpu");
    assert.equal(backendFromArgs(["--backend", "cpu", "--backend=webgpu"]), "webgpu");
    assert.equal(backendFromArgs(["--profile", "quick"]), undefined);
  });

  it("rejects a flag without a name", () => {
    assert.throws(() => backendFromArgs(["--backend"]), /--backend needs a value; name one of/);
    assert.throws(
      () => backendFromArgs(["--backend", "--quick"]),
      /--backend needs a value; name one of/,
    );
  });
});

describe("classifyAdapter", () => {
  it("tells Mesa's llvmpipe and fallback adapters from hardware GPUs", () => {
    const llvmpipe = { info: { vendor: "65541", description: "llvmpipe (LLVM 15.0.6, 256 bits)" } };
    assert.equal(classifyAdapter(llvmpipe).software, true);
    assert.equal(classifyAdapter(llvmpipe).description, "llvmpipe (LLVM 15.0.6, 256 bits)");
    assert.equal(classifyAdapter({ info: { vendor: "65541" } }).software, true);
    assert.equal(classifyAdapter({ isFallbackAdapter: true, info: {} }).software, true);
    assert.equal(
      classifyAdapter({ info: { isFallbackAdapter: true, vendor: "4318" } }).software,
      true,
    );
    assert.equal(classifyAdapter({ info: { description: "SwiftShader Device" } }).software, true);
    const nvidia = { info: { vendor: "4318", description: "NVIDIA H100 80GB HBM3" } };
    assert.equal(classifyAdapter(nvidia).software, false);
    assert.equal(
      classifyAdapter({ info: { vendor: "nvidia", architecture: "hopper" } }).software,
      false,
    );
  });
});

describe("selectBackend", () => {
  it("rejects an unknown name, listing the known ones", async () => {
    await assert.rejects(
      selectBackend({ requested: "gpu", quiet: true }),
      (error: Error) =>
        BACKEND_NAMES.every((name) => error.message.includes(name)) &&
        error.message.includes('"gpu"'),
    );
    await withEnv({ [BACKEND_ENV]: "tpu" }, async () => {
      await assert.rejects(selectBackend({ args: [], quiet: true }), /DIFFUSION_BACKEND/);
    });
  });

  it("takes DIFFUSION_BACKEND, overridden by --backend, overridden by requested", async () => {
    await withEnv({ [BACKEND_ENV]: "cpu" }, async () => {
      const fromEnv = await selectBackend({ args: [], quiet: true });
      assert.equal(fromEnv.name, "cpu");
      assert.equal(tf.getBackend(), "cpu");
      assert.deepEqual(fromEnv.tried, [{ name: "cpu", ok: true, reason: "" }]);

      const fromFlag = await selectBackend({ args: ["--backend", "wasm"], quiet: true });
      assert.equal(fromFlag.name, "wasm");
      assert.equal(tf.getBackend(), "wasm");
      assert.match(fromFlag.detail, /SIMD, \d+ threads?/);

      const fromOption = await selectBackend({
        requested: "cpu",
        args: ["--backend=wasm"],
        quiet: true,
      });
      assert.equal(fromOption.name, "cpu");
      assert.equal(tf.getBackend(), "cpu");
    });
    // A working computation on each: 1², 2², 3².
    assert.deepEqual(Array.from(await tf.square(tf.tensor1d([1, 2, 3])).data()), [1, 4, 9]);
  });

  it("is cheap to call twice: the same request gives the same report", async () => {
    const first = await selectBackend({ requested: "wasm", quiet: true });
    const second = await selectBackend({ requested: "wasm", quiet: true });
    assert.equal(second, first);
    // Switching away and back starts it again.
    await selectBackend({ requested: "cpu", quiet: true });
    const third = await selectBackend({ requested: "wasm", quiet: true });
    assert.equal(tf.getBackend(), "wasm");
    assert.equal(third.name, "wasm");
  });

  it("refuses an explicit webgpu without a hardware GPU, saying what to do", async () => {
    await withEnv({ [WEBGPU_ALLOW_SOFTWARE_ENV]: undefined }, async () => {
      let report;
      try {
        report = await selectBackend({ args: ["--backend", "webgpu"], quiet: true });
      } catch (error) {
        const message = (error as Error).message;
        assert.match(message, /backend "webgpu" was requested by the --backend flag/);
        assert.match(message, /software adapter|no WebGPU adapter|navigator\.gpu/);
        assert.match(message, /--backend NAME/);
        if (/software adapter/.test(message)) assert.match(message, /DIFFUSION_WEBGPU_ALLOW/);
        return;
      }
      // Only a hardware GPU may start it without DIFFUSION_WEBGPU_ALLOW_SOFTWARE=1.
      assert.equal(report.name, "webgpu");
      assert.doesNotMatch(report.detail, /^software/);
    });
  });

  it("picks a working backend automatically and reports what it tried", async () => {
    await withEnv({ [BACKEND_ENV]: undefined }, async () => {
      const report = await selectBackend({ args: [], quiet: true });
      assert.equal(report.name, tf.getBackend());
      // Tried in order, every failure with a reason, ending with the chosen one.
      const names = report.tried.map((t) => t.name);
      assert.deepEqual(names, BACKEND_NAMES.slice(0, names.length));
      assert.deepEqual(report.tried.at(-1), { name: report.name, ok: true, reason: "" });
      for (const t of report.tried.slice(0, -1)) {
        assert.equal(t.ok, false);
        assert.ok(t.reason.length > 0);
      }
      if (report.name === "webgpu") assert.doesNotMatch(report.detail, /^software/);
      assert.ok(report.detail.length > 0);
      assert.deepEqual(Array.from(await tf.add(tf.scalar(2), tf.scalar(3)).data()), [5]);
      assert.equal(await selectBackend({ args: ["--backend=auto"], quiet: true }), report);
    });
  });

  it("describes a report in one line", () => {
    const line = describeReport({
      name: "wasm",
      detail: "SIMD, 1 thread",
      tried: [
        { name: "tensorflow", ok: false, reason: "not set up" },
        { name: "webgpu", ok: false, reason: "only a software adapter" },
        { name: "wasm", ok: true, reason: "" },
      ],
    });
    assert.equal(
      line,
      "backend: wasm (SIMD, 1 thread) — tensorflow unavailable: not set up; " +
        "webgpu unavailable: only a software adapter",
    );
  });
});
