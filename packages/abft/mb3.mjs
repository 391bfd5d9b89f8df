import { Tensor, gemmSync, gemmCheckedSync } from '@kintsugi/cuda-core';
import { weightChecksums } from '@kintsugi/abft';
const [m,n,k]=[1024,1024,1024];
const a = Tensor.random([m,k],1), b = Tensor.random([k,n],2);
const sums = weightChecksums(b); const out = Tensor.zeros([m,n]);
for (let i=0;i<150;i++) gemmCheckedSync(a,b,{out, groupSums: sums.groups});
