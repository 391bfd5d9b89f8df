// `kintsugi abft campaign` and `kintsugi abft overhead` (wired into the kintsugi CLI by cuda-core).
import { cudaOverheadMarkdown, runCudaOverhead, runOverhead, overheadMarkdown } from './bench.js';
import { runCampaign, targets, type Target } from './inject.js';

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

const usage = `usage: kintsugi abft campaign [--trials N] [--clean N] [--targets input,weight,accumulator,output] [--bits 31,30,...] [--seed S] [--device cpu|cuda:N] [--json]
       kintsugi abft overhead [--quick] [--device cuda:0] [--json]`;

export async function abftCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const json = rest.includes('--json');
  if (sub === 'campaign') {
    const trials = Number(flag(rest, 'trials') ?? 10), clean = Number(flag(rest, 'clean') ?? 20);
    const t = flag(rest, 'targets'), b = flag(rest, 'bits'), seed = flag(rest, 'seed'), device = flag(rest, 'device');
    const result = await runCampaign({
      trials, cleanRuns: clean, ...(t ? { targets: t.split(',') as Target[] } : {}), ...(b ? { bits: b.split(',').map(Number) } : {}), ...(seed ? { seed: Number(seed) } : {}),
      ...(device !== undefined ? { device } : {}),
    });
    if (json) {
      console.log(JSON.stringify(result, null, 2));
      return 0;
    }
    if (device !== undefined && device !== 'cpu') console.log(`device: ${device}\n`);
    console.log('| scheme | target | significant | recall | precision | corrected |');
    console.log('|---|---|---|---|---|---|');
    for (const s of result.summary) console.log(`| ${s.scheme} | ${s.target} | ${s.significant} | ${(100 * s.recall).toFixed(1)}% | ${(100 * s.precision).toFixed(1)}% | ${s.corrected} (${(100 * s.correctedRate).toFixed(1)}%) |`);
    console.log('\nclean runs:');
    for (const c of result.clean) console.log(`  ${c.scheme}: ${c.falsePositives} false positives in ${c.runs}`);
    void targets;
    return 0;
  }
  if (sub === 'overhead') {
    const device = flag(rest, 'device');
    if (device !== undefined && device !== 'cpu') {
      const r = await runCudaOverhead({ device, quick: rest.includes('--quick') });
      console.log(json ? JSON.stringify(r, null, 2) : cudaOverheadMarkdown(r));
      return 0;
    }
    const r = await runOverhead({ quick: rest.includes('--quick') });
    console.log(json ? JSON.stringify(r, null, 2) : overheadMarkdown(r));
    return 0;
  }
  console.error(usage);
  return 2;
}
