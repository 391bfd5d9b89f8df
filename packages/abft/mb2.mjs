import { Tensor, gemmSync, gemmCheckedSync, abftRowCheckSync, cpuInfo, numThreads } from '@kintsugi/cuda-core';
import { weightChecksums } from '@kintsugi/abft';
console.log(cpuInfo().activeIsa, numThreads());
const shapes = process.argv[2] ? JSON.parse(process.argv[2]) : [[1024,1024,1024],[2048,2048,2048]];
for (const [m,n,k] of shapes) {
  const a = Tensor.random([m,k],1), b = Tensor.random([k,n],2);
  const sums = weightChecksums(b);
  const out = Tensor.zeros([m,n]);
  const iters = Math.max(3, Math.round(3e8/(2*m*n*k)));
  const f = {
    none: () => gemmSync(a,b,{out}),
    thread: () => gemmCheckedSync(a,b,{out, groupSums: sums.groups}),
    one: () => gemmCheckedSync(a,b,{out, groupSums: sums.groups, check:'one-sided'}),
    global: () => { gemmSync(a,b,{out}); abftRowCheckSync(a, sums.rowSums, sums.absRowSums, out); },
  };
  const res = {};
  for (const s in f) { f[s](); res[s]=[]; }
  for (let r=0;r<11;r++) for (const s in f) { const t=performance.now(); for(let i=0;i<iters;i++) f[s](); res[s].push((performance.now()-t)/iters); }
  const med = (v)=>v.sort((x,y)=>x-y)[5];
  const n0 = med(res.none);
  console.log(`${m}x${n}x${k} none ${(n0*1000).toFixed(1)}us ${(2*m*n*k/n0/1e6).toFixed(0)} GF/s ` + Object.keys(f).slice(1).map(s=>`${s} ${(100*(med(res[s])/n0-1)).toFixed(1)}%`).join(' '));
}
