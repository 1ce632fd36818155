/**
 * Layouts of images for the chapters' comparisons: a batch as a row, labelled rows as one
 * figure, a progress bar under an animation frame.
 *
 * @module
 */
import * as Plot from "@observablehq/plot";
import * as tf from "@tensorflow/tfjs";
import {
  encodePng,
  type ImageBatch,
  imageGrid,
  type RgbaImage,
  toRgbaImages,
} from "../core/images.ts";

/** The first `m` images of a batch. */
export function firstImages(batch: ImageBatch, m: number): ImageBatch {
  const [, h, w, c] = batch.shape;
  return { data: batch.data.subarray(0, m * h * w * c), shape: [m, h, w, c] };
}

/** A grey bar under `image`, filled to `fraction` of its width (an animation's progress). */
export function withProgressBar(image: RgbaImage, fraction: number): RgbaImage {
  const bar = 4;
  const out = new Uint8Array(image.width * (image.height + bar) * 4).fill(255);
  out.set(image.data);
  const filled = Math.round(fraction * image.width);
  for (let y = image.height + 1; y < image.height + bar; y++) {
    for (let x = 0; x < filled; x++) out.set([120, 120, 120], (y * image.width + x) * 4);
  }
  return { width: image.width, height: image.height + bar, data: out };
}

/** A batch as one row of images (at scale 2 when the row is long, else 3). */
export async function imageRow(images: tf.Tensor4D | ImageBatch): Promise<RgbaImage> {
  const cells = await toRgbaImages(images);
  return imageGrid(cells, { columns: cells.length, scale: cells.length > 8 ? 2 : 3 });
}

/**
 * Image rows with a label to the left of each, as one Plot figure (the images embedded as PNG),
 * for `book.figure`.
 */
export function labelledRows(rows: { label: string; image: RgbaImage }[]): Plot.PlotOptions {
  const { width, height } = rows[0].image;
  const src = (image: RgbaImage) => {
    let binary = "";
    for (const byte of encodePng(image)) binary += String.fromCharCode(byte);
    return `data:image/png;base64,${btoa(binary)}`;
  };
  const labelWidth = 200;
  return {
    width: labelWidth + width + 10,
    height: rows.length * (height + 8),
    margin: 0,
    marginLeft: labelWidth,
    x: { axis: null, domain: [0, 1] },
    y: { axis: null, type: "point", domain: rows.map((r) => r.label), padding: 0.5 },
    marks: [
      Plot.image(rows.map((r) => ({ label: r.label, src: src(r.image) })), {
        x: 0.5,
        y: "label",
        src: "src",
        width,
        height,
        imageRendering: "pixelated",
      }),
      Plot.text(rows, {
        x: 0,
        y: "label",
        text: "label",
        textAnchor: "end",
        dx: -10,
        fontSize: 13,
      }),
    ],
  };
}
