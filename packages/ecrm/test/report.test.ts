// The comparison's failure metrics, on a hand-made timeline whose answers are worked out by hand.
import { describe, expect, it } from 'vitest';
import { summarize, type TrainResult } from '../src/index.js';

/** Steps every 10 ms of 100 samples; a failure detected at 55 ms stalls step 5 until 85 ms. */
function timeline(): TrainResult {
  const times = [10, 20, 30, 40, 50, 85, 95, 105, 115, 125, 135, 145, 155, 165, 175, 185];
  return {
    mode: 'ecrm', label: 'ecrm xor k=4 r=1', batchSize: 100, events: [], checkpointMs: 0, checkpoints: 0, rebuildAfterTrainingMs: 0,
    records: times.map((t, step) => ({ step, t, ms: step === 5 ? 35 : 10, loss: 0.5, redo: false })),
    failures: [{ at: 55, server: [1], servedAt: 56, resumedAt: 150, lostSteps: 0 }],
    cpuMsPerStep: 12, trainerCpuMsPerStep: 9, wallMs: 200, evalLoss: 0.5, evalAuc: 0.75,
  };
}

describe('comparison metrics', () => {
  it('measure a failure from its detection, pauses from the last step and from the detection', () => {
    const row = summarize(timeline());
    // Steady state: steps 3 and 4 (after warm-up, before the failure) over 20 ms.
    expect(row.steadyThroughput).toBeCloseTo(10_000);
    expect(row.serveMs).toBe(1);
    expect(row.recoveryMs).toBe(95);
    // Window 50..150 ms holds 7 new steps (85…145) where 10 would fit: 30 ms lost.
    expect(row.lostMs).toBeCloseTo(30);
    // Serving again (1 ms) plus the slowdown after it: 94 ms for 7 steps of 10 ms.
    expect(row.recoveryCostMs).toBeCloseTo(25);
    expect(row.recoveryStepMs).toBe(35);   // 50 → 85 ms
    expect(row.detectedPauseMs).toBe(30);  // 55 → 85 ms
    expect(row.recoveryThroughput).toBeCloseTo(7000);
  });

  it('leave the failure metrics undefined for a run without a failure', () => {
    const run = { ...timeline(), failures: [] };
    const row = summarize(run);
    expect(row.serveMs).toBe(0);
    expect(Number.isNaN(row.recoveryStepMs)).toBe(true);
    expect(Number.isNaN(row.detectedPauseMs)).toBe(true);
  });
});
