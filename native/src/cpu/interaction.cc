// The pairwise-dot interaction of DLRM (see embedding.h), forward and backward. Samples are
// independent, so the pool splits them; within a sample the forward computes one row of the
// triangle at a time against a transposed copy of the sample's vectors, so the inner loop runs
// over pairs (contiguous, vectorised by the compiler) rather than reducing across a dot. The loops
// (interaction_loops.h) are built for any x86-64 here and for AVX-512 in interaction_avx512.cc.
#include <string>
#include <vector>

#include "interaction_loops.h"
#include "kintsugi/cpu.h"
#include "kintsugi/error.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {
namespace {

constexpr int64_t kParallelWork = 1 << 15;  // multiply-adds below which one thread does it

int64_t grain(int64_t per_sample) { return std::max<int64_t>(1, kParallelWork / std::max<int64_t>(1, per_sample)); }

bool use_avx512() {
#if !defined(KINTSUGI_NO_X86_KERNELS)
  return active_isa() == Isa::Avx512;
#else
  return false;
#endif
}

}  // namespace

void check_pairwise_dots(const PairwiseDotsArgs& a) {
  if (a.n < 0 || a.vectors < 0 || a.dim < 0)
    throw_expected(ErrorKind::Range, "non-negative n, vectors and dim", "pairwise dots",
                   std::to_string(a.n) + " x " + std::to_string(a.vectors) + " x " + std::to_string(a.dim));
}

void pairwise_dots_forward(const PairwiseDotsArgs& a, const float* z, float* out) {
  check_pairwise_dots(a);
  if (a.n == 0 || a.pairs() == 0) return;
  const bool wide = use_avx512();
  parallel_for(a.n, grain(a.pairs() * a.dim), [&](int64_t s0, int64_t s1) {
    std::vector<float> zt(size_t(a.dim * padded_vectors(a.vectors)));
#if !defined(KINTSUGI_NO_X86_KERNELS)
    if (wide) return detail::pairwise_dots_forward_avx512(a, z, out, s0, s1, zt.data());
#endif
    pairwise_forward_samples(a, z, out, s0, s1, zt.data());
  });
}

void pairwise_dots_backward(const PairwiseDotsArgs& a, const float* z, const float* grad_out, float* grad_z) {
  check_pairwise_dots(a);
  if (a.n == 0 || a.vectors == 0 || a.dim == 0) return;
  const bool wide = use_avx512();
  parallel_for(a.n, grain(a.vectors * a.vectors * a.dim), [&](int64_t s0, int64_t s1) {
    std::vector<float> g(size_t(a.vectors * a.vectors));
#if !defined(KINTSUGI_NO_X86_KERNELS)
    if (wide) return detail::pairwise_dots_backward_avx512(a, z, grad_out, grad_z, s0, s1, g.data());
#endif
    pairwise_backward_samples(a, z, grad_out, grad_z, s0, s1, g.data());
  });
}

}  // namespace kintsugi
