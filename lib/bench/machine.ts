/**
 * The machine a benchmark ran on, written into `canopy bench --out` reports so that
 * runs on different machines (or builds) can be compared: CPU model, cores and
 * threads, memory, OS, Node and canopy versions, the addon build, and the CUDA
 * devices with driver and runtime versions when there are any.
 */

import { existsSync, readFileSync } from 'node:fs';
import { arch, availableParallelism, cpus, platform, release, totalmem, type, version as osVersion } from 'node:os';

import { info } from '../info.js';

export interface MachineGpu {
  index: number;
  name: string;
  computeCapability: string;
  totalMemoryBytes: number;
  multiprocessors: number;
  clockKHz: number;
}

export interface MachineInfo {
  cpu: {
    model: string;
    /** Physical cores, when the OS says (Linux /proc/cpuinfo); otherwise undefined. */
    cores?: number;
    /** Logical processors the process may use. */
    threads: number;
    /** Threads canopy's CPU kernels use (CANOPY_THREADS or all). */
    canopyThreads: number;
    features: string[];
  };
  memory: { totalBytes: number };
  os: { platform: string; type: string; release: string; version: string; arch: string; distribution?: string };
  node: string;
  canopy: { version: string; addon: string; compiler?: string; cudaArchitectures?: string };
  cuda: {
    compiled: boolean;
    available: boolean;
    reason: string | null;
    /** CUDA driver API version, e.g. "12.8" (cudaDriverGetVersion). */
    driverApi?: string;
    /** NVIDIA kernel driver version, e.g. "550.54.15" (Linux /proc/driver/nvidia/version). */
    driver?: string;
    /** CUDA runtime linked into the addon, e.g. "13.0". */
    runtime?: string;
    gpus: MachineGpu[];
  };
}

/** CUDA's integer versions (12080) as "12.8". */
export function cudaVersionString(v: number): string | undefined {
  if (!v) return undefined;
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

/** Physical cores from /proc/cpuinfo text: distinct (physical id, core id) pairs. */
export function physicalCores(cpuinfo: string): number | undefined {
  const pairs = new Set<string>();
  let phys = '0';
  for (const line of cpuinfo.split('\n')) {
    const m = /^(physical id|core id)\s*:\s*(\d+)/.exec(line);
    if (!m) continue;
    if (m[1] === 'physical id') phys = m[2]!;
    else pairs.add(`${phys}:${m[2]}`);
  }
  return pairs.size || undefined;
}

function readIfExists(path: string): string | undefined {
  try {
    return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
  } catch {
    return undefined;
  }
}

/** Collects the machine facts (never throws for a missing addon or GPU: it reports them). */
export function machineInfo(): MachineInfo {
  const i = info();
  const procCpu = platform() === 'linux' ? readIfExists('/proc/cpuinfo') : undefined;
  const cores = procCpu ? physicalCores(procCpu) : undefined;
  const distro = readIfExists('/etc/os-release')?.match(/^PRETTY_NAME="?([^"\n]*)"?/m)?.[1];
  const nvidia = readIfExists('/proc/driver/nvidia/version')?.match(/Kernel Module\s+([\d.]+)/)?.[1];
  const model = i.cpu.model || cpus()[0]?.model || 'unknown';
  const driverApi = cudaVersionString(i.cuda.driverVersion);
  const runtime = cudaVersionString(i.cuda.runtimeVersion);
  return {
    cpu: { model: model.trim(), ...(cores ? { cores } : {}), threads: availableParallelism(), canopyThreads: i.cpu.threads, features: i.cpu.features },
    memory: { totalBytes: totalmem() },
    os: { platform: platform(), type: type(), release: release(), version: osVersion(), arch: arch(), ...(distro ? { distribution: distro } : {}) },
    node: process.version,
    canopy: {
      version: i.version,
      addon: i.addon.source ?? `not loaded (${i.addon.error ?? 'unknown'})`,
      ...(i.addon.build ? { compiler: i.addon.build.compiler } : {}),
      ...(i.cuda.architectures ? { cudaArchitectures: i.cuda.architectures } : {}),
    },
    cuda: {
      compiled: i.cuda.compiled,
      available: i.cuda.available,
      reason: i.cuda.reason,
      ...(driverApi ? { driverApi } : {}),
      ...(nvidia ? { driver: nvidia } : {}),
      ...(runtime ? { runtime } : {}),
      gpus: i.cuda.devices.map((d) => ({
        index: d.index,
        name: d.name,
        computeCapability: d.computeCapability,
        totalMemoryBytes: d.totalMemory,
        multiprocessors: d.multiprocessors,
        clockKHz: d.clockKHz,
      })),
    },
  };
}

/** One line for the top of a table: "Intel Xeon (2 cores, 2 threads), 23.5 GiB, Linux 6.1 x64, Node v20.20.2, canopy 0.1.0". */
export function describeMachine(m: MachineInfo): string {
  const cpu = `${m.cpu.model} (${m.cpu.cores ? `${m.cpu.cores} cores, ` : ''}${m.cpu.threads} threads)`;
  const gpus = m.cuda.gpus.map(
    (g) => `${g.name} (${(g.totalMemoryBytes / 2 ** 30).toFixed(0)} GiB${m.cuda.driver ? `, driver ${m.cuda.driver}` : ''}${m.cuda.runtime ? `, CUDA runtime ${m.cuda.runtime}` : ''})`,
  );
  return [
    cpu,
    `${(m.memory.totalBytes / 2 ** 30).toFixed(1)} GiB RAM`,
    ...gpus,
    `${m.os.distribution ?? m.os.type} (${m.os.type} ${m.os.release}, ${m.os.arch})`,
    `Node ${m.node}`,
    `canopy ${m.canopy.version}`,
  ].join(', ');
}

/** CPU time counters (Linux /proc, clock ticks): the whole machine's, and this process's with its waited-for children. */
export interface CpuSnapshot {
  busy: number;
  total: number;
  own: number;
}

/** Parses /proc/stat's first line and /proc/self/stat into a snapshot. */
export function parseCpuSnapshot(procStat: string, selfStat: string): CpuSnapshot | undefined {
  const cpu = /^cpu\s+(.*)$/m.exec(procStat)?.[1]?.trim().split(/\s+/).map(Number);
  // /proc/self/stat: "pid (comm) state ...": fields after the comm's closing parenthesis.
  const fields = selfStat.slice(selfStat.lastIndexOf(')') + 2).split(' ').map(Number);
  if (!cpu || cpu.length < 4 || fields.length < 15) return undefined;
  const [user, nice, system, idle, iowait = 0, irq = 0, softirq = 0, steal = 0] = cpu as number[];
  const busy = user! + nice! + system! + irq + softirq + steal;
  // utime, stime, cutime, cstime are fields 14-17 of the whole line, 12-15 after "state".
  const own = fields[11]! + fields[12]! + fields[13]! + fields[14]!;
  return { busy, total: busy + idle! + iowait, own };
}

/** The machine's CPU counters now (undefined where /proc is absent). */
export function cpuSnapshot(): CpuSnapshot | undefined {
  const stat = readIfExists('/proc/stat');
  const self = readIfExists('/proc/self/stat');
  return stat && self ? parseCpuSnapshot(stat, self) : undefined;
}

/**
 * The share of the machine's CPU capacity that other processes used between two
 * snapshots (0..1): busy time of the whole machine minus this process's and its children's.
 */
export function otherCpuShare(a: CpuSnapshot, b: CpuSnapshot): number {
  const total = b.total - a.total;
  if (total <= 0) return 0;
  return Math.min(1, Math.max(0, (b.busy - a.busy - (b.own - a.own)) / total));
}
