/**
 * The real InceptionV3, for a user who has its weights: FID and IS computed exactly as above,
 * on Inception's features and posteriors instead of the emoji classifier's. Nothing here
 * downloads anything: the user converts a model once (for example TF-Hub's
 * `imagenet/inception_v3/classification` with `tensorflowjs_converter`) and points
 * {@link loadGraphFeatures} at the folder with its `model.json` and weight shards.
 *
 * The preprocessing is pinned, since FID moves with it: images in [−1, 1] are resized to the
 * model's input size with TensorFlow 1's bilinear interpolation (`tf.image.resizeBilinear`
 * without corner alignment or half-pixel centres, no antialiasing), as the original FID graph's
 * ResizeBilinear does and torch-fidelity reproduces (`interpolate_bilinear_2d_like_tensorflow1x`);
 * pytorch-fid's `F.interpolate` samples at half-pixel centres, so its numbers differ slightly.
 * Then they are mapped linearly to the model's input range ([0, 1] by default, as TF-Hub's
 * InceptionV3 takes). The features are the output named `featuresNode` (Inception's 2048-d
 * pool), the posteriors the softmax of `logitsNode`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { BatchFeatures, FeatureExtractor } from "./evaluate.ts";

/** Where the graph model is, and how to feed and read it. */
export interface GraphFeatureOptions {
  /** Folder holding `model.json` and the weight files it names. */
  path: string;
  /** The model's square input size in pixels (299 for InceptionV3). */
  inputSize?: number;
  /** The input range the model expects (default [0, 1], TF-Hub's). */
  inputRange?: [number, number];
  /** Output node of the features (the penultimate pool). */
  featuresNode: string;
  /** Output node of the class logits; without it the extractor has no posteriors (no IS). */
  logitsNode?: string;
}

/** Read a TensorFlow.js graph model's files from a local folder (no fetch, no network). */
function folderHandler(path: string): tf.io.IOHandler {
  return {
    async load() {
      const json = JSON.parse(await Deno.readTextFile(`${path}/model.json`));
      const groups = json.weightsManifest as {
        paths: string[];
        weights: tf.io.WeightsManifestEntry[];
      }[];
      const parts: Uint8Array[] = [];
      for (const group of groups) {
        for (const file of group.paths) parts.push(await Deno.readFile(`${path}/${file}`));
      }
      const weightData = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let offset = 0;
      for (const part of parts) {
        weightData.set(part, offset);
        offset += part.length;
      }
      return {
        modelTopology: json.modelTopology,
        format: json.format,
        generatedBy: json.generatedBy,
        convertedBy: json.convertedBy,
        signature: json.signature,
        userDefinedMetadata: json.userDefinedMetadata,
        weightSpecs: groups.flatMap((g) => g.weights),
        weightData: weightData.buffer,
      };
    },
  };
}

/** A graph model as a feature extractor (see the module comment). */
export class GraphFeatures implements FeatureExtractor {
  readonly featureDim: number;
  readonly classes: number;

  private constructor(
    readonly model: tf.GraphModel,
    readonly options: Required<Omit<GraphFeatureOptions, "logitsNode">> & { logitsNode?: string },
    dims: { featureDim: number; classes: number },
  ) {
    this.featureDim = dims.featureDim;
    this.classes = dims.classes;
  }

  /** Load the model at `options.path` and read its output sizes from one probe image. */
  static async load(options: GraphFeatureOptions): Promise<GraphFeatures> {
    let model: tf.GraphModel;
    try {
      model = await tf.loadGraphModel(folderHandler(options.path));
    } catch (e) {
      throw new Error(
        `${options.path} holds no TensorFlow.js graph model (${(e as Error).message}); convert ` +
          `InceptionV3 with tensorflowjs_converter and point to the folder with its model.json.`,
      );
    }
    const full = { inputSize: 299, inputRange: [0, 1] as [number, number], ...options };
    const probe = tf.zeros([1, full.inputSize, full.inputSize, 3]);
    const outputs = [full.featuresNode, ...(full.logitsNode ? [full.logitsNode] : [])];
    let results: tf.Tensor[];
    try {
      results = [model.execute(probe, outputs)].flat() as tf.Tensor[];
    } catch (e) {
      model.dispose();
      throw new Error(
        `${options.path}: the model has no output ${outputs.join(" or ")} (${
          (e as Error).message
        }); ` +
          `name its feature and logit nodes.`,
      );
    } finally {
      probe.dispose();
    }
    const dims = { featureDim: results[0].size, classes: results[1]?.size ?? 0 };
    tf.dispose(results);
    return new GraphFeatures(model, full, dims);
  }

  /** Images [N, H, W, 3] in [−1, 1], resized and rescaled as the module comment pins. */
  #input(x: tf.Tensor4D): tf.Tensor4D {
    const { inputSize, inputRange: [low, high] } = this.options;
    const resized = x.shape[1] === inputSize && x.shape[2] === inputSize
      ? x
      : tf.image.resizeBilinear(x, [inputSize, inputSize], false, false);
    return tf.add(tf.mul(tf.add(resized, 1), (high - low) / 2), low) as tf.Tensor4D;
  }

  /** φ(x) and p(y | x) of a batch, from one run of the graph. */
  apply(x: tf.Tensor4D): BatchFeatures {
    const { featuresNode, logitsNode } = this.options;
    const n = x.shape[0];
    const [features, posteriors] = tf.tidy(() => {
      const outputs = [this.model.execute(this.#input(x), [
        featuresNode,
        ...(logitsNode ? [logitsNode] : []),
      ])].flat() as tf.Tensor[];
      return [
        tf.reshape(outputs[0], [n, this.featureDim]) as tf.Tensor2D,
        ...(logitsNode
          ? [tf.softmax(tf.reshape(outputs[1], [n, this.classes])) as tf.Tensor2D]
          : []),
      ];
    });
    return { features, posteriors: posteriors ?? null };
  }

  dispose(): void {
    this.model.dispose();
  }
}

/** Load a graph model as a feature extractor (see {@link GraphFeatures}). */
export function loadGraphFeatures(options: GraphFeatureOptions): Promise<GraphFeatures> {
  return GraphFeatures.load(options);
}
