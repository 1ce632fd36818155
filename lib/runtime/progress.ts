/**
 * A progress bar for long loops: step, loss, steps per second and time left.
 *
 * On a terminal (`Deno.stderr.isTerminal()`) one line is redrawn in place with `\r`; in a log
 * file or CI, a plain line is printed every `intervalSeconds` and at the end, so logs stay
 * readable. Speed is measured from the first update, and the time left is
 *
 *   remaining = (total − step) / (steps per second).
 *
 * @module
 */

/** Where the bar writes: a stream that may be a terminal. */
export interface ProgressSink {
  /** Write text (no newline added). */
  write(text: string): void;
  /** Whether the stream is an interactive terminal (redraw with `\r`). */
  isTerminal: boolean;
}

/** Options of {@link ProgressBar}. */
export interface ProgressOptions {
  /** Text before the bar, e.g. "train". */
  label?: string;
  /** Step the count starts from (a resumed run), default 0. */
  start?: number;
  /** Seconds between plain lines when not on a terminal (default 10). */
  intervalSeconds?: number;
  /** Seconds between redraws on a terminal (default 0.1). */
  redrawSeconds?: number;
  /** Width of the bar in characters (default 24). */
  width?: number;
  /** Output (default: standard error, or `console.log` where there is no Deno). */
  sink?: ProgressSink;
  /** Clock in milliseconds (default `performance.now`), replaceable in tests. */
  now?: () => number;
}

function defaultSink(): ProgressSink {
  const deno = (globalThis as { Deno?: typeof Deno }).Deno;
  if (deno?.stderr) {
    const encoder = new TextEncoder();
    return {
      write: (text) => {
        deno.stderr.writeSync(encoder.encode(text));
      },
      isTerminal: deno.stderr.isTerminal(),
    };
  }
  return { write: (text) => console.log(text.replace(/\n$/, "")), isTerminal: false };
}

/** Format seconds as h:mm:ss or m:ss. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** A progress bar; call {@link ProgressBar.update} every step and {@link ProgressBar.done} at the end. */
export class ProgressBar {
  readonly #total: number;
  readonly #label: string;
  readonly #sink: ProgressSink;
  readonly #now: () => number;
  readonly #interval: number;
  readonly #redraw: number;
  readonly #width: number;
  readonly #start: number;
  readonly #startTime: number;
  #lastWrite = -Infinity;
  #lastWrittenStep = -1;
  #step: number;
  #values: Record<string, number> = {};
  #finished = false;

  /** @param total the step at which the loop ends */
  constructor(total: number, options: ProgressOptions = {}) {
    this.#total = total;
    this.#label = options.label ?? "";
    this.#sink = options.sink ?? defaultSink();
    this.#now = options.now ?? (() => performance.now());
    this.#interval = (options.intervalSeconds ?? 10) * 1000;
    this.#redraw = (options.redrawSeconds ?? 0.1) * 1000;
    this.#width = options.width ?? 24;
    this.#start = options.start ?? 0;
    this.#step = this.#start;
    this.#startTime = this.#now();
  }

  /** Steps per second since the first step. */
  get stepsPerSecond(): number {
    const seconds = (this.#now() - this.#startTime) / 1000;
    return seconds > 0 ? (this.#step - this.#start) / seconds : 0;
  }

  /** The line the bar shows now (without `\r` or newline). */
  line(): string {
    const fraction = this.#total > 0 ? Math.min(1, this.#step / this.#total) : 1;
    const filled = Math.round(fraction * this.#width);
    const bar = "█".repeat(filled) + "░".repeat(this.#width - filled);
    const rate = this.stepsPerSecond;
    const left = rate > 0 ? (this.#total - this.#step) / rate : NaN;
    const values = Object.entries(this.#values)
      .map(([k, v]) =>
        `${k} ${Math.abs(v) >= 1e-3 || v === 0 ? v.toFixed(4) : v.toExponential(2)}`
      );
    return [
      this.#label,
      `${bar} ${this.#step}/${this.#total}`,
      ...values,
      `${rate.toFixed(2)} steps/s`,
      `${formatDuration(left)} left`,
    ].filter((s) => s.length > 0).join("  ");
  }

  /** Record that `step` steps are done, with values to show (e.g. `{ loss }`). */
  update(step: number, values: Record<string, number> = {}): void {
    this.#step = step;
    this.#values = { ...this.#values, ...values };
    const now = this.#now();
    const wait = this.#sink.isTerminal ? this.#redraw : this.#interval;
    if (now - this.#lastWrite < wait && step < this.#total) return;
    this.#lastWrite = now;
    this.#lastWrittenStep = step;
    if (this.#sink.isTerminal) this.#sink.write(`\r${this.line()}\x1b[K`);
    else this.#sink.write(`${this.line()}\n`);
  }

  /** Print the final line (once). */
  done(): void {
    if (this.#finished) return;
    this.#finished = true;
    if (this.#sink.isTerminal) this.#sink.write(`\r${this.line()}\x1b[K\n`);
    else if (this.#lastWrittenStep !== this.#step) this.#sink.write(`${this.line()}\n`);
  }
}
