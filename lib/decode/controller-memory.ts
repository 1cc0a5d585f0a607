/**
 * The goodput controller's cost curves, kept between generations (lib/decode/controller.ts).
 * What a target pass of n rows and a proposer's draft of size k cost is a property of this
 * machine, the models and the step kind, not of one generation: a controller starting from an
 * earlier generation's curves needs no first speculative step to learn them, and does not
 * probe a proposer that could never pay here (a draft model as dear as its target). The
 * batch-wide acceptance carries over too, as the start of the next generation's (each
 * sequence's own estimate still starts from it and moves with its own drafts). Curves are
 * keyed by the target Model (weakly: they go with it) and a string naming the proposer, the
 * draft model and the step kind; every controller of that key measures into the same curves.
 */
import { CostCurve } from './controller-costs.js';
import type { SharedCosts } from './controller-types.js';

const curves = new WeakMap<object, Map<string, SharedCosts>>();
const ids = new WeakMap<object, number>();
let nextId = 1;

/** A stable number for an object (a draft model) within this process, for the keys. */
export function objectId(o: object): number {
  let id = ids.get(o);
  if (id === undefined) ids.set(o, (id = nextId++));
  return id;
}

/** The shared cost curves of `target` under `key` (created on first use). */
export function sharedCosts(target: object, key: string): SharedCosts {
  let byKey = curves.get(target);
  if (!byKey) curves.set(target, (byKey = new Map()));
  let c = byKey.get(key);
  if (!c) byKey.set(key, (c = { verify: new CostCurve(0.25, 7), draft: new CostCurve(0.25, 7), acceptance: { accept: [], weight: [], treeTokens: new Map() } }));
  return c;
}
