// Retry timing: exponential backoff with a cap and jitter, and only for the reasons the job's policy names.
// Pure, so every rule is tested without processes or clocks.
import type { RetryPolicy, RetryReason } from './types.js';

/**
 * Milliseconds to wait before the next attempt, or null when there must be none.
 * `attemptsSoFar` counts the attempts of the chain already made (1 after the first failure);
 * `policy.max` is the number of retries allowed after the first attempt.
 * delay = min(backoff × factor^(attemptsSoFar-1), max_backoff), then ± jitter × delay.
 */
export function retryDelay(policy: RetryPolicy, reason: RetryReason, attemptsSoFar: number, random: () => number = Math.random): number | null {
  if (!policy.on.includes(reason)) return null;
  if (!Number.isFinite(attemptsSoFar) || attemptsSoFar < 1) return null;
  if (attemptsSoFar > policy.max) return null;
  const exponential = policy.backoff * Math.pow(Math.max(policy.factor, 1), attemptsSoFar - 1);
  const capped = Math.min(exponential, policy.max_backoff > 0 ? policy.max_backoff : exponential);
  const jitter = Math.min(Math.max(policy.jitter, 0), 1);
  const spread = capped * jitter * (2 * random() - 1);
  return Math.max(0, Math.round(capped + spread));
}

/** Maps how a run ended to the reason a retry policy is written in; null = never retried (operator stop, validation). */
export function retryReasonFor(state: string, reason: string | null): RetryReason | null {
  if (state === 'interrupted') return 'interrupted';
  if (state === 'failed') return reason === 'crash' || reason === null ? 'crash' : null;
  if (state === 'killed') {
    switch (reason) {
      case 'heartbeat':
      case 'stalled':
      case 'timeout':
      case 'memory':
      case 'swap':
      case 'disk':
      case 'thrash':
        return reason;
      default:
        return null;
    }
  }
  return null;
}
