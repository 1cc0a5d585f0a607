/**
 * Peak memory around one benchmark row.
 *
 * Host: the process's resident set. Two sources, combined: the kernel's lifetime
 * high-water mark (process.resourceUsage().maxRSS), exact but only informative when
 * it rises during the row; and samples of process.memoryUsage.rss() taken every few
 * milliseconds while the row awaits native work (timers do not fire while JavaScript
 * itself is busy, so a short peak inside synchronous code can be missed by the
 * samples — but then it raised the high-water mark). The row's peak is the
 * high-water mark when that rose during the row, otherwise the highest sample.
 *
 * Device: on CUDA, memory in use on the device (total - free from cudaMemGetInfo,
 * every process on the device included), sampled the same way.
 */

import { native } from '../native/loader.js';

export interface RowMemory {
  /** Resident set of this process when the row started, MiB (what earlier rows left: the peak minus it is the row's growth). */
  startRssMiB: number;
  /** Peak resident set of this process during the row, MiB. */
  peakRssMiB: number;
  /** Peak device memory in use during the row (all processes on the device), MiB; CUDA rows only. */
  peakDeviceMiB?: number;
}

const MiB = 2 ** 20;

/** Samples memory from start() to stop(). */
export class MemorySampler {
  #timer: ReturnType<typeof setInterval> | undefined;
  #maxRssBefore = 0;
  #peakRss = 0;
  #startRss = 0;
  #peakDevice = -1;
  readonly #device: number | undefined;

  /** `cudaDevice`: also sample that device's memory in use. */
  constructor(cudaDevice?: number, readonly intervalMs = 5) {
    this.#device = cudaDevice;
  }

  #sample(): void {
    this.#peakRss = Math.max(this.#peakRss, process.memoryUsage.rss());
    if (this.#device !== undefined) {
      try {
        const m = native().cudaMemInfo(this.#device);
        this.#peakDevice = Math.max(this.#peakDevice, m.total - m.free);
      } catch {
        // CUDA unusable: no device figure.
      }
    }
  }

  start(): void {
    this.#maxRssBefore = process.resourceUsage().maxRSS * 1024;
    this.#peakRss = 0;
    this.#peakDevice = -1;
    this.#startRss = process.memoryUsage.rss();
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), this.intervalMs);
    this.#timer.unref();
  }

  stop(): RowMemory {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#sample();
    const maxRssAfter = process.resourceUsage().maxRSS * 1024;
    const peak = maxRssAfter > this.#maxRssBefore ? Math.max(maxRssAfter, this.#peakRss) : this.#peakRss;
    return { startRssMiB: this.#startRss / MiB, peakRssMiB: peak / MiB, ...(this.#peakDevice >= 0 ? { peakDeviceMiB: this.#peakDevice / MiB } : {}) };
  }
}
