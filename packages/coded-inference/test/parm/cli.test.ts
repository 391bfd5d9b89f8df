import { describe, expect, it, vi } from 'vitest';

import { parmCommand, parseEvalArgs, parseTrainArgs, parityFileName } from '../../src/parm/index.js';

const base = ['--dataset', 'mnist', '--deployed', 'd.safetensors', '--out', 'p.safetensors'];

describe('kintsugi parm arguments', () => {
  it('parses train options with the paper defaults', () => {
    expect(parseTrainArgs([...base, '--k', '2'])).toMatchObject({ k: 2, r: 1, encoder: 'sum', epochs: 10, lr: 1e-3, weightDecay: 1e-5, validation: 5000, batch: undefined });
    expect(parseTrainArgs([...base, '--k', '4', '--encoder', 'concat', '--r', '2', '--epochs', '3'])).toMatchObject({ k: 4, r: 2, encoder: 'concat', epochs: 3 });
    expect(parseTrainArgs([...base, '--k', '2'])).toMatchObject({ init: 'deployed', ceWeight: 0, grid: undefined, shift: 0 });
    expect(parseTrainArgs([...base, '--k', '2', '--shift', '2'])).toMatchObject({ shift: 2 });
    expect(parseTrainArgs([...base, '--k', '2'])).toMatchObject({ average: 0, holdoutSeed: undefined });
    expect(parseTrainArgs([...base, '--k', '2', '--average', '0.999', '--holdout-seed', '21'])).toMatchObject({ average: 0.999, holdoutSeed: 21 });
    expect(() => parseTrainArgs([...base, '--k', '2', '--average', '1'])).toThrow('Expected a number in [0, 1) for --average but received "1"');
    expect(() => parseTrainArgs([...base, '--k', '2', '--average', '-0.5'])).toThrow(/--average/);
    expect(parseTrainArgs([...base, '--k', '2', '--encoder', 'concat', '--grid', '2x1'])).toMatchObject({ grid: [2, 1] });
    expect(parseTrainArgs([...base, '--k', '3', '--encoder', 'concat', '--init', 'old.safetensors', '--ce-weight', '0.5'])).toMatchObject({ k: 3, init: 'old.safetensors', ceWeight: 0.5 });
    expect(parseEvalArgs(['--dataset', 'fashion-mnist', '--deployed', 'd', '--parity', 'a', '--parity', 'b'])).toMatchObject({ parity: ['a', 'b'], berrutK: 8, stragglers: [1, 2, 3], fitImages: 8000 });
    expect(parseEvalArgs(['--dataset', 'mnist', '--deployed', 'd', '--fit-images', '0'])).toMatchObject({ fitImages: 0 });
  });

  it('names each bad argument in one message shape', () => {
    const cases: [string[], string][] = [
      [[...base], 'Expected an integer in [2, 64] for --k but received nothing'],
      [[...base, '--k', 'two'], 'Expected an integer in [2, 64] for --k but received "two"'],
      [[...base, '--k', '65'], 'Expected an integer in [2, 64] for --k but received "65"'],
      [[...base, '--k', '10', '--encoder', 'concat'], 'Expected an integer in [2, 9] with --encoder concat for --k but received "10"'],
      [[...base, '--k', '3', '--encoder', 'concat', '--grid', '2x1'], 'Expected ROWSxCOLS (1…3 each, at least k = 3 tiles) with --encoder concat for --grid but received "2x1"'],
      [[...base, '--k', '2', '--grid', '2x1'], 'Expected ROWSxCOLS (1…3 each, at least k = 2 tiles) with --encoder concat for --grid but received "2x1"'],
      [[...base, '--k', '2', '--ce-weight=-1'], 'Expected a number ≥ 0 for --ce-weight but received "-1"'],
      [[...base, '--k', '2', '--shift', '1.5'], 'Expected an integer in [0, 13] for --shift but received "1.5"'],
      [[...base, '--k', '2', '--shift', '14'], 'Expected an integer in [0, 13] for --shift but received "14"'],
      [[...base, '--k', '2', '--encoder', 'xor'], 'Expected one of sum | concat for --encoder but received "xor"'],
      [[...base, '--k', '2', '--r', '3'], 'Expected an integer in [1, 2] for --r but received "3"'],
      [[...base, '--k', '2', '--epochs', '0'], 'Expected an integer ≥ 1 for --epochs but received "0"'],
      [[...base, '--k', '2', '--lr', 'fast'], 'Expected a number ≥ 0 for --lr but received "fast"'],
      [['--deployed', 'd', '--out', 'o', '--k', '2', '--dataset', 'cifar'], 'Expected one of mnist | fashion-mnist for --dataset but received "cifar"'],
      [['--dataset', 'mnist', '--out', 'o', '--k', '2'], 'Expected a deployed model file for --deployed but received nothing'],
    ];
    for (const [argv, message] of cases) expect(() => parseTrainArgs(argv), message).toThrow(message);
    expect(() => parseEvalArgs(['--dataset', 'mnist', '--deployed', 'd', '--stragglers', '1,x'])).toThrow('Expected an integer in [0, 16] for --stragglers but received "x"');
    expect(() => parseEvalArgs(['--dataset', 'mnist', '--deployed', 'd', '--fit-images=-5'])).toThrow('Expected an integer ≥ 0 for --fit-images but received "-5"');
  });

  it('exits 2 with the message and usage on bad input', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await parmCommand(['fit'])).toBe(2);
      expect(String(err.mock.calls[0][0])).toMatch(/^Expected train \| eval for the parm subcommand but received "fit"\n\nUsage:/);
      expect(await parmCommand(['train', ...base, '--k', '1'])).toBe(2);
      expect(await parmCommand(['eval', '--bogus'])).toBe(2);
      expect(await parmCommand(['train', ...base, '--k', '2', '--deployed', '/nonexistent.safetensors'])).toBe(1);
    } finally {
      err.mockRestore();
    }
  });

  it('names r > 1 files by parity row', () => {
    expect(parityFileName('m/p.safetensors', 1, 0)).toBe('m/p.safetensors');
    expect(parityFileName('m/p.safetensors', 2, 1)).toBe('m/p.p1.safetensors');
    expect(parityFileName('m.d/p', 2, 0)).toBe('m.d/p.p0');
  });
});
