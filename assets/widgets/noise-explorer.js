/**
 * Noise explorer: watch the forward process destroy an image, computed in the browser.
 *
 *   x_t = sqrt(alphaBar_t) · x_0 + sqrt(1 − alphaBar_t) · ε,   ε ~ N(0, I)
 *
 * Mounts on every `<div class="widget" data-widget="noise-explorer">` holding a
 * `<script type="application/json">` with
 *   { T: number,
 *     schedules: { [name]: number[] },          // alphaBar_t for t = 1..T
 *     images: [{ name, size, pixels }] }        // size·size·3 RGB values in [-1, 1]
 * ε is drawn once per image from a seeded generator, so dragging t is smooth and repeatable.
 * Plain browser JavaScript, no build step.
 */
(() => {
  "use strict";

  const STYLE = `
.nx{--nx-rule:var(--rule,#ddd);--nx-soft:var(--bg-soft,#f5f5f5);--nx-text:var(--text,#222);
 --nx-faint:var(--text-faint,#777);--nx-accent:var(--accent,#4338ca);
 border:1px solid var(--nx-rule);border-radius:.75rem;padding:1rem 1.1rem 1.1rem;
 background:var(--bg-raised,#fff);color:var(--nx-text);font-family:var(--font-ui,system-ui,sans-serif);
 font-size:.9rem;line-height:1.4}
.nx-title{margin:0 0 .8rem;font-weight:650;font-size:.95rem;display:flex;align-items:center;gap:.55rem}
.nx-title::before{content:"";width:.55rem;height:.55rem;border-radius:50%;background:var(--nx-accent);
 box-shadow:0 0 0 3px color-mix(in srgb,var(--nx-accent) 25%,transparent)}
.nx-controls{display:flex;flex-wrap:wrap;gap:.6rem 1rem;align-items:end;margin-bottom:1rem}
.nx-field{display:flex;flex-direction:column;gap:.25rem}
.nx-field>span{font-size:.7rem;font-weight:600;letter-spacing:.06em;text-transform:uppercase;color:var(--nx-faint)}
.nx select,.nx button{font:inherit;color:var(--nx-text);background:var(--nx-soft);
 border:1px solid var(--nx-rule);border-radius:.5rem;padding:.35rem .65rem;cursor:pointer}
.nx button:hover,.nx select:hover{border-color:var(--nx-accent)}
.nx-stage{display:flex;flex-wrap:wrap;align-items:center;justify-content:center;gap:.5rem .8rem;margin:.2rem 0 .9rem}
.nx-panel{display:flex;flex-direction:column;align-items:center;gap:.35rem;margin:0}
.nx-panel canvas{border-radius:.4rem;box-shadow:0 1px 3px rgb(0 0 0/.2);image-rendering:pixelated;
 width:var(--nx-size,96px);height:var(--nx-size,96px);background:#808080}
.nx-label sub,.nx-readout sub{font-size:.75em;line-height:0}
.nx-label{font-size:.8rem;color:var(--nx-faint);font-variant-numeric:tabular-nums;white-space:nowrap}
.nx-op{font-size:1.05rem;color:var(--nx-faint);font-family:var(--font-text,serif);white-space:nowrap}
.nx-slider{display:flex;align-items:center;gap:.75rem;margin:.2rem 0 .7rem}
.nx-slider input{flex:1;accent-color:var(--nx-accent)}
.nx-readouts{display:grid;grid-template-columns:.7fr 1fr 1fr 1.6fr;gap:.5rem}
.nx-readout{background:var(--nx-soft);border:1px solid var(--nx-rule);border-radius:.5rem;padding:.35rem .6rem}
.nx-readout b{display:block;font-size:.7rem;font-weight:600;letter-spacing:.03em;color:var(--nx-faint)}
.nx-readout span{font-size:1.05rem;font-weight:600;font-variant-numeric:tabular-nums}
.nx-chart{display:block;width:100%;height:130px;margin-top:.8rem}
.nx-error{color:var(--error,#b42318)}
@media (max-width:640px){.nx-readouts{grid-template-columns:repeat(2,minmax(0,1fr))}}`;

  function injectStyle() {
    if (document.getElementById("noise-explorer-style")) return;
    const style = document.createElement("style");
    style.id = "noise-explorer-style";
    style.textContent = STYLE;
    document.head.appendChild(style);
  }

  /** Mulberry32: a seeded uniform generator in [0, 1). */
  function mulberry32(seed) {
    let state = seed >>> 0;
    return () => {
      state = (state + 0x6d2b79f5) >>> 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 15), z | 1);
      z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
      return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
    };
  }

  /** FNV-1a hash of a string, to seed each image's noise. */
  function hashString(text) {
    let h = 2166136261;
    for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
    return h >>> 0;
  }

  /** n standard normals by the Box–Muller transform. */
  function normals(n, seed) {
    const uniform = mulberry32(seed);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - uniform()));
      const angle = 2 * Math.PI * uniform();
      out[i] = r * Math.cos(angle);
      if (i + 1 < n) out[i + 1] = r * Math.sin(angle);
    }
    return out;
  }

  /** [-1, 1] → byte, as the book writes images: clip(round((x + 1) · 127.5), 0, 255). */
  function toByte(x) {
    const b = Math.round((x + 1) * 127.5);
    return b < 0 ? 0 : b > 255 ? 255 : b;
  }

  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "text") node.textContent = value;
      else if (key === "html") node.innerHTML = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.appendChild(child);
    return node;
  }

  function validate(data) {
    if (!data || typeof data !== "object") return "no data";
    if (!(data.T > 0)) return "T must be a positive number";
    const names = Object.keys(data.schedules || {});
    if (names.length === 0) return "no schedules";
    for (const name of names) {
      const values = data.schedules[name];
      if (!Array.isArray(values) || values.length !== data.T) {
        return `schedule ${name} must hold T = ${data.T} values of alphaBar`;
      }
    }
    if (!Array.isArray(data.images) || data.images.length === 0) return "no images";
    for (const [i, image] of data.images.entries()) {
      if (!image || !(image.size > 0) || image.pixels?.length !== image.size * image.size * 3) {
        return `image ${i} must have size·size·3 pixel values`;
      }
    }
    return null;
  }

  function format(x, digits) {
    if (!Number.isFinite(x)) return x > 0 ? "∞" : "−∞";
    if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e4)) return x.toExponential(2);
    return x.toFixed(digits);
  }

  function mount(root) {
    if (root.dataset.mounted) return;
    root.dataset.mounted = "true";
    const source = root.querySelector('script[type="application/json"]');
    let data = null;
    try {
      data = JSON.parse(source ? source.textContent : "null");
    } catch (_) {
      data = null;
    }
    const problem = validate(data);
    if (problem) {
      root.appendChild(el("p", { class: "nx-error", text: `Noise explorer: ${problem}.` }));
      console.error(`noise-explorer: ${problem}`);
      return;
    }

    const T = data.T;
    const names = Object.keys(data.schedules);
    const state = { schedule: names[0], image: 0, t: Math.round(T / 4), reseed: 0, timer: 0 };

    const scheduleSelect = el(
      "select",
      { "aria-label": "Noise schedule" },
      names.map((name) => el("option", { value: name, text: name })),
    );
    const imageSelect = el(
      "select",
      { "aria-label": "Image" },
      data.images.map((image, i) =>
        el("option", { value: String(i), text: image.name || `image ${i + 1}` })
      ),
    );
    const reseedButton = el("button", { type: "button", text: "New noise ε" });
    const playButton = el("button", { type: "button", text: "▶ Play" });
    const slider = el("input", {
      type: "range",
      min: "0",
      max: String(T),
      step: "1",
      value: String(state.t),
      "aria-label": "Time step t",
      class: "nx-t",
    });
    const tLabel = el("span", { class: "nx-label" });

    const panel = (cls, label) => {
      const canvas = el("canvas", { class: cls });
      const caption = el("figcaption", { class: "nx-label", html: label });
      return { box: el("figure", { class: "nx-panel" }, [canvas, caption]), canvas, caption };
    };
    const clean = panel("nx-x0", "<i>x</i><sub>0</sub>");
    const noise = panel("nx-eps", "<i>ε</i>");
    const noised = panel("noise-explorer-xt nx-xt", "<i>x</i><sub>t</sub>");
    const weightA = el("span", { class: "nx-op" });
    const weightB = el("span", { class: "nx-op" });

    const readout = {};
    const readouts = el(
      "div",
      { class: "nx-readouts", "aria-live": "polite" },
      [
        ["t", "<i>t</i>"],
        ["ab", "<i>ᾱ<sub>t</sub></i>"],
        ["sab", "√<i>ᾱ<sub>t</sub></i>"],
        ["snr", "SNR = <i>ᾱ<sub>t</sub></i> / (1 − <i>ᾱ<sub>t</sub></i>)"],
      ].map(
        ([key, label]) => {
          readout[key] = el("span");
          return el("div", { class: "nx-readout" }, [el("b", { html: label }), readout[key]]);
        },
      ),
    );
    const chart = el("canvas", { class: "nx-chart", role: "img", "aria-label": "ᾱ_t against t" });

    root.appendChild(
      el("div", { class: "nx" }, [
        el("p", { class: "nx-title", text: "Noise explorer" }),
        el("div", { class: "nx-controls" }, [
          el("label", { class: "nx-field" }, [el("span", { text: "Schedule" }), scheduleSelect]),
          el("label", { class: "nx-field" }, [el("span", { text: "Image" }), imageSelect]),
          reseedButton,
          playButton,
        ]),
        el("div", { class: "nx-stage" }, [
          weightA,
          clean.box,
          el("span", { class: "nx-op", text: "+" }),
          weightB,
          noise.box,
          el("span", { class: "nx-op", text: "=" }),
          noised.box,
        ]),
        el("div", { class: "nx-slider" }, [
          el("span", { class: "nx-label", text: "t" }),
          slider,
          tLabel,
        ]),
        readouts,
        chart,
      ]),
    );

    const noiseCache = new Map();
    const epsilon = (i) => {
      const key = `${i}:${state.reseed}`;
      if (!noiseCache.has(key)) {
        const image = data.images[i];
        const seed = hashString(`${image.name || ""}#${i}`) + state.reseed * 7919;
        noiseCache.set(key, normals(image.size * image.size * 3, seed));
      }
      return noiseCache.get(key);
    };

    const alphaBar = (t) => (t <= 0 ? 1 : data.schedules[state.schedule][Math.min(T, t) - 1]);

    const offscreen = document.createElement("canvas");
    const paint = (canvas, size, values, cssSize) => {
      const px = Math.round(cssSize * (globalThis.devicePixelRatio || 1));
      if (canvas.width !== px) {
        canvas.width = px;
        canvas.height = px;
      }
      canvas.style.setProperty("--nx-size", `${cssSize}px`);
      offscreen.width = size;
      offscreen.height = size;
      const small = offscreen.getContext("2d");
      const image = small.createImageData(size, size);
      for (let p = 0; p < size * size; p++) {
        image.data[p * 4] = toByte(values[p * 3]);
        image.data[p * 4 + 1] = toByte(values[p * 3 + 1]);
        image.data[p * 4 + 2] = toByte(values[p * 3 + 2]);
        image.data[p * 4 + 3] = 255;
      }
      small.putImageData(image, 0, 0);
      const out = canvas.getContext("2d");
      out.imageSmoothingEnabled = false;
      out.clearRect(0, 0, px, px);
      out.drawImage(offscreen, 0, 0, px, px);
    };

    const colour = (name, fallback) =>
      getComputedStyle(root).getPropertyValue(name).trim() || fallback;

    const drawChart = () => {
      const ratio = globalThis.devicePixelRatio || 1;
      const w = chart.clientWidth || 480;
      const h = chart.clientHeight || 130;
      chart.width = Math.round(w * ratio);
      chart.height = Math.round(h * ratio);
      const ctx = chart.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, w, h);
      const pad = { l: 30, r: 12, t: 10, b: 20 };
      const x = (t) => pad.l + (t / T) * (w - pad.l - pad.r);
      const y = (v) => pad.t + (1 - v) * (h - pad.t - pad.b);
      const faint = colour("--text-faint", "#888");
      const rule = colour("--rule", "#ddd");
      const accent = colour("--accent", "#4338ca");
      ctx.font = `11px ${colour("--font-ui", "system-ui, sans-serif")}`;
      ctx.lineWidth = 1;
      for (const v of [0, 0.5, 1]) {
        ctx.strokeStyle = rule;
        ctx.beginPath();
        ctx.moveTo(pad.l, y(v));
        ctx.lineTo(w - pad.r, y(v));
        ctx.stroke();
        ctx.fillStyle = faint;
        ctx.fillText(v.toFixed(1), 4, y(v) + 4);
      }
      ctx.fillText("0", pad.l - 3, h - 5);
      ctx.textAlign = "right";
      ctx.fillText(`t = ${T}`, w - pad.r, h - 5);
      ctx.textAlign = "left";
      names.forEach((name, i) => {
        const active = name === state.schedule;
        const values = data.schedules[name];
        ctx.beginPath();
        ctx.moveTo(x(0), y(1));
        for (let t = 1; t <= T; t++) ctx.lineTo(x(t), y(values[t - 1]));
        ctx.strokeStyle = active ? accent : faint;
        ctx.globalAlpha = active ? 1 : 0.4;
        ctx.lineWidth = active ? 2.4 : 1.2;
        ctx.stroke();
        ctx.globalAlpha = 1;
        ctx.fillStyle = active ? accent : faint;
        ctx.textAlign = "right";
        ctx.fillText(`${active ? "● " : ""}${name}`, w - pad.r, pad.t + 10 + i * 14);
        ctx.textAlign = "left";
      });
      ctx.strokeStyle = accent;
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(x(state.t), pad.t);
      ctx.lineTo(x(state.t), h - pad.b);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = accent;
      ctx.beginPath();
      ctx.arc(x(state.t), y(alphaBar(state.t)), 4, 0, 2 * Math.PI);
      ctx.fill();
    };

    const render = () => {
      const image = data.images[state.image];
      const n = image.size * image.size * 3;
      const ab = alphaBar(state.t);
      const a = Math.sqrt(ab);
      const b = Math.sqrt(Math.max(0, 1 - ab));
      const e = epsilon(state.image);
      const xt = new Float32Array(n);
      for (let i = 0; i < n; i++) xt[i] = a * image.pixels[i] + b * e[i];
      const width = (root.clientWidth || 640) - 40;
      const small = Math.max(56, Math.min(104, Math.floor(width / 7.2)));
      const large = Math.max(112, Math.min(208, Math.floor(width / 3.6)));
      paint(clean.canvas, image.size, image.pixels, small);
      paint(noise.canvas, image.size, e, small);
      paint(noised.canvas, image.size, xt, large);
      weightA.textContent = `${a.toFixed(3)} ·`;
      weightB.textContent = `${b.toFixed(3)} ·`;
      noised.caption.innerHTML = `<i>x</i><sub>${state.t}</sub>`;
      tLabel.textContent = `${state.t} / ${T}`;
      readout.t.textContent = String(state.t);
      readout.ab.textContent = format(ab, 4);
      readout.sab.textContent = format(a, 4);
      const snr = ab >= 1 ? Infinity : ab / (1 - ab);
      readout.snr.textContent = format(snr, 3) +
        (Number.isFinite(snr) && snr > 0 ? ` (${(10 * Math.log10(snr)).toFixed(1)} dB)` : "");
      drawChart();
    };

    const stop = () => {
      clearInterval(state.timer);
      state.timer = 0;
      playButton.textContent = "▶ Play";
    };
    scheduleSelect.addEventListener("change", () => {
      state.schedule = scheduleSelect.value;
      render();
    });
    imageSelect.addEventListener("change", () => {
      state.image = Number(imageSelect.value);
      render();
    });
    slider.addEventListener("input", () => {
      state.t = Number(slider.value);
      render();
    });
    reseedButton.addEventListener("click", () => {
      state.reseed++;
      render();
    });
    playButton.addEventListener("click", () => {
      if (state.timer) return stop();
      if (state.t >= T) state.t = 0;
      playButton.textContent = "❚❚ Pause";
      const stride = Math.max(1, Math.round(T / 120));
      state.timer = setInterval(() => {
        state.t = Math.min(T, state.t + stride);
        slider.value = String(state.t);
        render();
        if (state.t >= T) stop();
      }, 40);
    });
    document.addEventListener("book-theme", () => requestAnimationFrame(drawChart));
    globalThis.matchMedia?.("(prefers-color-scheme: dark)").addEventListener?.("change", drawChart);
    let lastWidth = root.clientWidth;
    globalThis.addEventListener("resize", () => {
      if (root.clientWidth !== lastWidth) {
        lastWidth = root.clientWidth;
        render();
      }
    });
    render();
  }

  function mountAll() {
    injectStyle();
    for (const root of document.querySelectorAll('.widget[data-widget="noise-explorer"]')) {
      mount(root);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();
})();
