/**
 * The native TensorFlow backend (tfjs-node over libtensorflow), loaded on demand.
 *
 * @module
 */

/** What loading the native backend gave: its name and a detail line, or why it failed. */
export type NativeBackendResult =
  | { ok: true; name: "tensorflow"; detail: string }
  | { ok: false; reason: string };

/**
 * Load and register the "tensorflow" backend with TensorFlow.js.
 *
 * Not set up on this checkout: always reports why.
 */
export function loadNativeBackend(): Promise<NativeBackendResult> {
  return Promise.resolve({
    ok: false,
    reason: "native TensorFlow backend not set up (run `deno task setup`)",
  });
}
