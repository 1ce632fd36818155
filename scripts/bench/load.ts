/**
 * How busy the machine was with other work while the benchmark ran, and whether that makes the
 * run's times unfit to publish.
 *
 * The 1-minute load average of /proc/loadavg counts the benchmark's own threads (tfjs-node's
 * and the PyTorch and Keras peers' pools), so on an idle machine it climbs towards the core count
 * while the rounds run, and it cannot say what else ran. What other processes used is measured
 * instead from CPU time, over windows:
 *
 *   other cores = (Δbusy − Δours) / Δtotal × cpus,
 *
 * where busy and total are the machine's jiffies from /proc/stat's `cpu` line (busy = user +
 * nice + system + irq + softirq + steal; total adds idle and iowait; steal is time the hypervisor
 * gave other guests, the other tenants of a shared host), and ours is the utime + stime of the
 * benchmark's own processes (/proc/PID/stat of the Deno process, all its threads, and of every
 * peer). Both count in the same ticks, so the share needs no clock rate.
 *
 * The windows: two seconds with every runtime started and idle before the rounds, each round,
 * the cpu-backend run, and two seconds after every runtime has closed. The load average is
 * recorded at the end of each window beside the figure, for the record.
 *
 * A run is busy when other processes took more than {@link BUSY_SHARE} of the cores in any
 * window. A quarter, not the half that a load-average rule would use: during a round the
 * benchmark keeps every core busy, so other work gets only its share of the CPU, less than it
 * asks for (one other busy thread on 2 cores beside 2 of ours gets about ⅔ of a core), and
 * PyTorch's OpenMP threads, which wait for their slowest one at every barrier, slow down by
 * whole factors when a single core is taken. The idle windows measure other work unimpeded.
 *
 * @module
 */

/**
 * Share of the cores that other processes may take in any window of a run before the run is
 * busy (its times are not representative and it is written aside).
 */
export const BUSY_SHARE = 0.25;

/** Seconds of each idle window, before the rounds and after. */
export const IDLE_WINDOW_SECONDS = 2;

/** The machine's CPU ticks, summed over its CPUs (the `cpu` line of /proc/stat). */
export interface MachineTicks {
  /** Ticks not idle: user, nice, system, irq, softirq, steal. */
  busy: number;
  /** All ticks: busy, idle and iowait. */
  total: number;
  /** CPUs the line sums over (the `cpuN` lines). */
  cpus: number;
}

/** The machine's ticks from the text of /proc/stat; undefined when it has no `cpu` line. */
export function parseProcStat(text: string): MachineTicks | undefined {
  const line = text.match(/^cpu\s+(.+)$/m);
  if (!line) return undefined;
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line[1].trim().split(/\s+/)
    .map(Number).concat([0, 0, 0, 0, 0, 0, 0, 0]);
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait, cpus: text.match(/^cpu\d+\s/gm)?.length ?? 1 };
}

/**
 * utime + stime (ticks) of a process from the text of /proc/PID/stat. Fields are counted after
 * the command name's closing parenthesis, since the name itself may hold spaces.
 */
export function parseProcessStat(text: string): number | undefined {
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 of stat(5); the text after ") " starts at field 3.
  const utime = Number(fields[11]), stime = Number(fields[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? utime + stime : undefined;
}

/** The machine's ticks and the benchmark's own at one moment. */
export interface CpuSnapshot {
  machine: MachineTicks;
  /** Ticks of the benchmark's processes so far. */
  ours: number;
}

/** Cores' worth of CPU time other processes used between two snapshots (see the module). */
export function otherCores(from: CpuSnapshot, to: CpuSnapshot): number {
  const total = to.machine.total - from.machine.total;
  if (total <= 0) return 0;
  const others = (to.machine.busy - from.machine.busy) - (to.ours - from.ours);
  return Math.max(0, others / total * to.machine.cpus);
}

/** One window of the run. */
export interface LoadSample {
  /** What ran in the window: `before`, `16×16 round 2`, `after`, … */
  at: string;
  /** Length of the window. */
  seconds: number;
  /** 1-minute load average at the window's end (our own threads included). */
  loadAverage?: number;
  /** Cores' worth of CPU time other processes used in the window; undefined without /proc. */
  otherCores?: number;
}

/** Whether a run was busy, and why. */
export interface BusyVerdict {
  busy: boolean;
  /** The windows over the threshold, worst first (busy runs only). */
  reason?: string;
}

/**
 * A run is busy when other processes took more than `share` of `cores` in any window (see the
 * module for why a quarter).
 */
export function busyVerdict(
  samples: readonly LoadSample[],
  cores: number,
  share = BUSY_SHARE,
): BusyVerdict {
  const limit = share * cores;
  const over = samples.filter((s) => s.otherCores !== undefined && s.otherCores > limit)
    .sort((a, b) => b.otherCores! - a.otherCores!);
  if (over.length === 0) return { busy: false };
  const windows = over.map((s) => `${s.otherCores!.toFixed(2)} during ${s.at}`);
  return {
    busy: true,
    reason: `other processes took more than ${limit} of ${cores} cores (${
      windows.slice(0, 3).join("; ")
    }${over.length > 3 ? `; and ${over.length - 3} more windows` : ""})`,
  };
}

/** Where a busy run's report goes: beside `out`, with `-busy` before the extension. */
export function busyPath(out: string): string {
  return /\.json$/.test(out) ? out.replace(/\.json$/, "-busy.json") : `${out}-busy`;
}

/** The 1-minute load average, or undefined without /proc/loadavg. */
export async function loadAverage(): Promise<number | undefined> {
  const text = await Deno.readTextFile("/proc/loadavg").catch(() => "");
  return text ? Number(text.split(" ")[0]) : undefined;
}

/** Linux's USER_HZ, the unit of /proc's tick counts on every mainstream architecture. */
const TICKS_PER_SECOND = 100;

/**
 * Records the run's windows: `mark()` starts one, `sample(at)` ends it and starts the next.
 * `pids()` names the benchmark's processes at each reading (the Deno process is always one).
 */
export class LoadMeter {
  /** The windows so far. */
  readonly samples: LoadSample[] = [];
  readonly #pids: () => number[];
  /** Last ticks read of each process, kept when it has exited. */
  readonly #ticks = new Map<number, number>();
  readonly #started = performance.now();
  #last?: { snapshot?: CpuSnapshot; time: number };

  constructor(pids: () => number[] = () => []) {
    this.#pids = pids;
  }

  async #snapshot(): Promise<CpuSnapshot | undefined> {
    const machine = parseProcStat(await Deno.readTextFile("/proc/stat").catch(() => ""));
    if (!machine) return undefined;
    for (const pid of new Set([Deno.pid, ...this.#pids()])) {
      const text = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "");
      const ticks = parseProcessStat(text);
      if (ticks !== undefined) this.#ticks.set(pid, ticks);
    }
    return { machine, ours: [...this.#ticks.values()].reduce((a, b) => a + b, 0) };
  }

  /** Start a window (what ran since the last one is not recorded). */
  async mark(): Promise<void> {
    this.#last = { snapshot: await this.#snapshot(), time: performance.now() };
  }

  /** End the window that `mark` or the last `sample` started, as `at`, and start the next. */
  async sample(at: string): Promise<LoadSample> {
    const from = this.#last ?? { time: this.#started };
    await this.mark();
    const to = this.#last!;
    const sample: LoadSample = {
      at,
      seconds: Number(((to.time - from.time) / 1000).toFixed(1)),
      loadAverage: await loadAverage(),
      ...(from.snapshot && to.snapshot
        ? { otherCores: Number(otherCores(from.snapshot, to.snapshot).toFixed(2)) }
        : {}),
    };
    this.samples.push(sample);
    return sample;
  }

  /**
   * CPU seconds the Deno process and the peers used since they started, beside the wall-clock
   * seconds since the meter was made.
   */
  cpuSeconds(): { wall: number; bench: number; peers: number } {
    const seconds = (ticks: number) => Number((ticks / TICKS_PER_SECOND).toFixed(1));
    const bench = this.#ticks.get(Deno.pid) ?? 0;
    const all = [...this.#ticks.values()].reduce((a, b) => a + b, 0);
    return {
      wall: Number(((performance.now() - this.#started) / 1000).toFixed(1)),
      bench: seconds(bench),
      peers: seconds(all - bench),
    };
  }
}
