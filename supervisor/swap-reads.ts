// When a tree's VmSwap figures must be re-read. VmSwap is only in /proc/<pid>/status, the most expensive
// read per process (about twice a stat), and on a host with some swap in use by anyone, reading it for
// every process at every tick was most of the sampler's reads. A page going out to swap takes a swap slot,
// which moves the host's SwapFree; so while the host's swap in use stands still and the tree had nothing
// in swap, its VmSwap figures are re-read only once a second. The exception this second covers: a page
// swapped back in may keep its slot (swap cache), and swapping it out again moves VmSwap but not SwapFree.
// A tree with something in swap is re-read at every tick: it is the one a swap limit is about.

/** Longest time between two reads of every process's VmSwap while swap is in use on the host, ms. */
export const SWAP_FULL_READ_MS = 1000;

/** What the last full VmSwap read of one tree saw. */
export interface SwapReadState {
  /** hostSwapUsed() at that read; -1 before the first. */
  hostUsed: number;
  /** When it happened (ms, the sampler's clock). */
  at: number;
  /** The tree's VmSwap total it found, bytes. */
  treeSwap: number;
}

/** The state of a tree that has not read VmSwap yet. */
export function newSwapReadState(): SwapReadState {
  return { hostUsed: -1, at: Number.NEGATIVE_INFINITY, treeSwap: 0 };
}

/**
 * Whether this walk reads VmSwap for every process of the tree (`hostUsed` = hostSwapUsed() now). False
 * when the host has no swap in use (every VmSwap is 0 then); processes new to the tree are read anyway.
 */
export function swapReadDue(state: SwapReadState, hostUsed: number, now: number): boolean {
  if (hostUsed === 0) return false;
  if (!Number.isFinite(hostUsed)) return true;
  return hostUsed !== state.hostUsed || state.treeSwap > 0 || now - state.at >= SWAP_FULL_READ_MS || now < state.at;
}

/** Records a walk: a full read (`fullRead`) moves the state to it; the tree total is kept either way. */
export function noteSwapWalk(state: SwapReadState, hostUsed: number, now: number, fullRead: boolean, treeSwap: number): void {
  if (fullRead || hostUsed === 0) {
    state.hostUsed = hostUsed;
    state.at = now;
  }
  state.treeSwap = treeSwap;
}
