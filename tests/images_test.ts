import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  decodePng,
  encodeAnimation,
  encodeApng,
  encodeGif,
  encodePng,
  imageGrid,
  type RgbaImage,
  toRgbaImages,
} from "../lib/core/images.ts";
import { Random } from "../lib/core/random.ts";
import UPNG from "upng-js";

await tf.setBackend("cpu");

function randomImage(width: number, height: number, seed: number, opaque = false): RgbaImage {
  const random = new Random(seed);
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < data.length; i++) {
    data[i] = opaque && i % 4 === 3 ? 255 : random.int(0, 256);
  }
  return { width, height, data };
}

/** Walks a GIF's blocks: image descriptors, delays (centiseconds) and the loop extension. */
function parseGif(bytes: Uint8Array) {
  const text = (a: number, b: number) => String.fromCharCode(...bytes.subarray(a, b));
  assert.equal(text(0, 6), "GIF89a");
  let p = 13;
  if (bytes[10] & 0x80) p += 3 * (1 << ((bytes[10] & 7) + 1));
  const skipSubBlocks = () => {
    while (bytes[p] !== 0) p += bytes[p] + 1;
    p++;
  };
  let frames = 0, loop = false;
  const delays: number[] = [];
  for (;;) {
    const block = bytes[p++];
    if (block === 0x3b) break;
    if (block === 0x21) {
      const label = bytes[p++];
      if (label === 0xf9) delays.push(bytes[p + 2] | (bytes[p + 3] << 8));
      if (label === 0xff && text(p + 1, p + 12) === "NETSCAPE2.0") loop = true;
      skipSubBlocks();
    } else if (block === 0x2c) {
      frames++;
      const packed = bytes[p + 8];
      p += 9;
      if (packed & 0x80) p += 3 * (1 << ((packed & 7) + 1));
      p++; // LZW minimum code size
      skipSubBlocks();
    } else {
      throw new Error(`unexpected GIF block 0x${block.toString(16)} at ${p - 1}`);
    }
  }
  assert.equal(p, bytes.length, "the trailer ends the file");
  return { frames, loop, delays, width: bytes[6] | (bytes[7] << 8) };
}

function pngChunk(bytes: Uint8Array, type: string): DataView | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let p = 8; p + 12 <= bytes.length;) {
    const length = view.getUint32(p);
    if (String.fromCharCode(...bytes.subarray(p + 4, p + 8)) === type) {
      return new DataView(bytes.buffer, bytes.byteOffset + p + 8, length);
    }
    p += 12 + length;
  }
  return null;
}

describe("toRgbaImages", () => {
  it("maps [-1, 1] to bytes with rounding and clipping", async () => {
    const data = new Float32Array([-1, 0, 1, 2, -3, 0.5]);
    const [image] = await toRgbaImages({ data, shape: [1, 1, 2, 3] });
    assert.equal(image.width, 2);
    assert.equal(image.height, 1);
    assert.deepEqual([...image.data], [0, 128, 255, 255, 255, 0, 191, 255]);
  });

  it("repeats grey into RGB and reads tensors the same as arrays", async () => {
    const data = new Float32Array([-1, -0.5, 0.5, 1, 0, 0.25]);
    const tensor = tf.tensor4d(data, [3, 1, 2, 1]);
    const fromTensor = await toRgbaImages(tensor);
    tensor.dispose();
    const fromArray = await toRgbaImages({ data, shape: [3, 1, 2, 1] });
    assert.deepEqual(fromTensor, fromArray);
    assert.equal(fromArray.length, 3);
    assert.deepEqual([...fromArray[0].data], [0, 0, 0, 255, 64, 64, 64, 255]);
  });

  it("rejects 2 or 4 channels with advice", async () => {
    await assert.rejects(
      toRgbaImages({ data: new Float32Array(4), shape: [1, 1, 1, 4] }),
      /1 or 3 channels/,
    );
  });
});

describe("imageGrid", () => {
  it("places scaled images with padding on a background", () => {
    const images = [0, 1, 2, 3, 4].map((i) => randomImage(4, 3, i, true));
    const grid = imageGrid(images, { columns: 3, padding: 2, scale: 2, background: [10, 20, 30] });
    assert.equal(grid.width, 3 * 8 + 4 * 2);
    assert.equal(grid.height, 2 * 6 + 3 * 2);
    assert.equal(grid.data.length, grid.width * grid.height * 4);
    const at = (
      x: number,
      y: number,
    ) => [...grid.data.subarray((y * grid.width + x) * 4, (y * grid.width + x) * 4 + 4)];
    const pixel = (
      image: RgbaImage,
      x: number,
      y: number,
    ) => [...image.data.subarray((y * 4 + x) * 4, (y * 4 + x) * 4 + 4)];
    assert.deepEqual(at(0, 0), [10, 20, 30, 255]);
    assert.deepEqual(at(2, 2), pixel(images[0], 0, 0));
    assert.deepEqual(at(3, 3), pixel(images[0], 0, 0));
    assert.deepEqual(at(4, 2), pixel(images[0], 1, 0));
    assert.deepEqual(at(9, 7), pixel(images[0], 3, 2));
    assert.deepEqual(at(10, 2), [10, 20, 30, 255]);
    // Second row, second column: image 4, top-left at (2 + 8 + 2, 2 + 6 + 2).
    assert.deepEqual(at(12, 10), pixel(images[4], 0, 0));
    // The empty sixth cell stays background.
    assert.deepEqual(at(22 + 3, 10 + 3), [10, 20, 30, 255]);
  });

  it("defaults to a near-square grid with 1 px padding", () => {
    const grid = imageGrid([0, 1, 2, 3, 4].map((i) => randomImage(2, 2, i)));
    assert.equal(grid.width, 3 * 2 + 4);
    assert.equal(grid.height, 2 * 2 + 3);
  });

  it("rejects images of different sizes", () => {
    assert.throws(() => imageGrid([randomImage(2, 2, 0), randomImage(3, 2, 1)]), /equal sizes/);
  });
});

describe("PNG", () => {
  it("round-trips exactly, with and without transparency", () => {
    for (const image of [randomImage(7, 5, 1), randomImage(16, 16, 2, true)]) {
      const bytes = encodePng(image);
      assert.deepEqual([...bytes.subarray(1, 4)], [80, 78, 71]);
      const decoded = decodePng(bytes);
      assert.equal(decoded.width, image.width);
      assert.equal(decoded.height, image.height);
      assert.deepEqual(decoded.data, image.data);
    }
  });

  it("refuses bytes that are not a PNG", () => {
    assert.throws(() => decodePng(new TextEncoder().encode("not a png at all")));
  });
});

describe("animations", () => {
  const frames = [0, 1, 2, 3, 4].map((i) => randomImage(12, 10, 10 + i, true));

  it("GIF has a header, one descriptor per frame, the delay and the loop", () => {
    const looping = parseGif(encodeGif(frames, { delayMs: 80 }));
    assert.equal(looping.frames, 5);
    assert.equal(looping.width, 12);
    assert.deepEqual(looping.delays, [8, 8, 8, 8, 8]);
    assert.equal(looping.loop, true);
    const once = parseGif(encodeGif(frames, { loop: false }));
    assert.equal(once.frames, 5);
    assert.equal(once.loop, false);
  });

  it("GIF of few colours keeps them exactly", () => {
    const red = { width: 2, height: 1, data: new Uint8Array([255, 0, 0, 255, 0, 0, 255, 255]) };
    const bytes = encodeGif([red, red]);
    // Global colour table right after the 13-byte header: the first colours are the two used.
    const table = [...bytes.subarray(13, 19)];
    const colours = [table.slice(0, 3).join(), table.slice(3, 6).join()].sort();
    assert.deepEqual(colours, ["0,0,255", "255,0,0"]);
  });

  it("APNG has acTL with the frame count and a lossless first frame", () => {
    const bytes = encodeApng(frames, { delayMs: 50 });
    const acTL = pngChunk(bytes, "acTL")!;
    assert.ok(acTL);
    assert.equal(acTL.getUint32(0), 5);
    assert.equal(acTL.getUint32(4), 0, "plays forever");
    assert.deepEqual(decodePng(bytes).data, frames[0].data);
    const fcTL = pngChunk(bytes, "fcTL")!;
    assert.equal(fcTL.getUint16(20) / fcTL.getUint16(22), 0.05);
    const once = encodeApng(frames, { loop: false });
    assert.equal(pngChunk(once, "acTL")!.getUint32(4), 1);
    decodePng(once); // CRCs still valid: the decoder reads the file
  });

  it("APNG keeps every frame exactly, even incompressible noise", () => {
    const noise = [0, 1, 2].map((i) => randomImage(9, 7, 100 + i));
    const decoded = UPNG.decode(encodeApng(noise).slice().buffer);
    const all = UPNG.toRGBA8(decoded).map((b: ArrayBuffer) => new Uint8Array(b));
    assert.equal(all.length, 3);
    all.forEach((data: Uint8Array, i: number) => assert.deepEqual(data, noise[i].data));
  });

  it("encodeAnimation keeps the smaller file", () => {
    const { bytes, format } = encodeAnimation(frames);
    const sizes = { gif: encodeGif(frames).length, png: encodeApng(frames).length };
    assert.equal(bytes.length, Math.min(sizes.gif, sizes.png));
    assert.equal(format, sizes.png < sizes.gif ? "png" : "gif");
  });

  it("rejects frames of different sizes", () => {
    assert.throws(() => encodeGif([frames[0], randomImage(3, 3, 0)]), /one size/);
    assert.throws(() => encodeApng([]), /at least one frame/);
  });
});
