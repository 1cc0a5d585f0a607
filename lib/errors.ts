/**
 * Errors thrown by canopy. Every error is a CanopyError with a stable `code`;
 * argument errors name the argument, what was expected and what was received.
 * Native failures (CUDA errors, out of memory, I/O) arrive from the addon as
 * plain Errors with a `code` and are rethrown here as the matching subclass,
 * with a JavaScript stack from the call site.
 */

export type CanopyErrorCode =
  | 'ERR_CANOPY_INVALID_ARGUMENT'
  | 'ERR_CANOPY_DISPOSED'
  | 'ERR_CANOPY_OUT_OF_MEMORY'
  | 'ERR_CANOPY_CUDA_UNAVAILABLE'
  | 'ERR_CANOPY_CUDA'
  | 'ERR_CANOPY_IO'
  | 'ERR_CANOPY_NATIVE_LOAD'
  | 'ERR_CANOPY_NUMERIC'
  | 'ERR_CANOPY_INTERNAL';

export class CanopyError extends Error {
  readonly code: CanopyErrorCode;
  constructor(code: CanopyErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A bad argument: names it, says what was expected and what was received. */
export class ArgumentError extends CanopyError {
  /** The argument's name, when known (native checks report it in the message only). */
  readonly argument: string | undefined;
  constructor(argument: string, expected: string, received: unknown);
  constructor(message: string, options?: { cause?: unknown });
  constructor(first: string, second?: string | { cause?: unknown }, received?: unknown) {
    if (typeof second === 'string') {
      super('ERR_CANOPY_INVALID_ARGUMENT', `${first} must be ${second}; received ${describe(received)}`);
      this.argument = first;
    } else {
      super('ERR_CANOPY_INVALID_ARGUMENT', first, second);
      this.argument = undefined;
    }
  }
}

/** A tensor (or other native object) was used after dispose(). */
export class DisposedError extends CanopyError {
  constructor(what: string) {
    super('ERR_CANOPY_DISPOSED', `${what} was used after dispose()`);
  }
}

export class OutOfMemoryError extends CanopyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CANOPY_OUT_OF_MEMORY', message, options);
  }
}

/** Why CUDA cannot be used. */
export type CudaUnavailableReason = 'not-compiled' | 'no-driver' | 'no-device' | 'compute-capability' | 'other';

export class CudaUnavailableError extends CanopyError {
  readonly reason: CudaUnavailableReason;
  constructor(reason: CudaUnavailableReason, message: string, options?: { cause?: unknown }) {
    super('ERR_CANOPY_CUDA_UNAVAILABLE', message, options);
    this.reason = reason;
  }
}

export class CudaError extends CanopyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CANOPY_CUDA', message, options);
  }
}

export class IoError extends CanopyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CANOPY_IO', message, options);
  }
}

/** The native addon could not be found or loaded; the message says how to build it. */
export class NativeLoadError extends CanopyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CANOPY_NATIVE_LOAD', message, options);
  }
}

/** Numbers that cannot be right: NaN/Inf in weights (validate: true) or logits with no usable value. */
export class NumericError extends CanopyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CANOPY_NUMERIC', message, options);
  }
}

export class InternalError extends CanopyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CANOPY_INTERNAL', message, options);
  }
}

/** Classifies a CUDA-unavailable message from the addon. */
export function classifyCudaReason(message: string): CudaUnavailableReason {
  if (/no CUDA support|not compiled/i.test(message)) return 'not-compiled';
  if (/InsufficientDriver|no NVIDIA driver|driver .* older/i.test(message)) return 'no-driver';
  if (/NoDevice|no CUDA device|does not exist/i.test(message)) return 'no-device';
  if (/compute capability/i.test(message)) return 'compute-capability';
  return 'other';
}

/** Converts an error thrown or rejected by the addon into a CanopyError. */
export function fromNativeError(e: unknown): Error {
  if (e instanceof CanopyError) return e;
  if (!(e instanceof Error)) return new InternalError(`native error: ${String(e)}`);
  const code = (e as { code?: unknown }).code;
  const options = { cause: e };
  switch (code) {
    case 'ERR_CANOPY_INVALID_ARGUMENT':
      return new ArgumentError(e.message, options);
    case 'ERR_CANOPY_OUT_OF_MEMORY':
      return new OutOfMemoryError(e.message, options);
    case 'ERR_CANOPY_CUDA_UNAVAILABLE':
      return new CudaUnavailableError(classifyCudaReason(e.message), e.message, options);
    case 'ERR_CANOPY_CUDA':
      return new CudaError(e.message, options);
    case 'ERR_CANOPY_IO':
      return new IoError(e.message, options);
    case 'ERR_CANOPY_INTERNAL':
      return new InternalError(e.message, options);
    default:
      return e;
  }
}

/** Runs a synchronous native call, converting its errors. */
export function callNative<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw fromNativeError(e);
  }
}

/** Awaits an asynchronous native call, converting its rejection (the new error carries this call's stack). */
export async function awaitNative<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (e) {
    throw fromNativeError(e);
  }
}

/** A short description of a received value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) {
    const inner = value.slice(0, 8).map((v) => (typeof v === 'object' ? describe(v) : String(v)));
    return `[${inner.join(', ')}${value.length > 8 ? ', ...' : ''}]`;
  }
  if (value instanceof Int32Array && value.length <= 8) return `Int32Array [${Array.from(value).join(', ')}]`; // index arrays
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as { length?: number }).length ?? value.byteLength})`;
  if (typeof value === 'function') return 'a function';
  const ctor = (value as object).constructor?.name;
  return ctor && ctor !== 'Object' ? `a ${ctor}` : 'an object';
}
