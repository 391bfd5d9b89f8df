// Checksum-protected GEMM (ABFT) against the same GEMM unprotected, timed interleaved: the
// thread-level checks fused into the register tiles (two- and one-sided) and the global scheme
// (sgemm, then the Huang–Abraham row check of C against A and B's offline row sums). The peer
// is our own plain sgemm on the same inputs, so ratio = 1 / (1 + overhead).
#include <algorithm>
#include <exception>
#include <cmath>
#include <vector>

#include "bench.h"
#include "kintsugi/abft.h"
#include "kintsugi/gemm.h"

namespace kbench {
namespace {

using kintsugi::Layout;
using kintsugi::Transpose;

struct AbftCase {
  std::string group, name;
  int64_t m, n, k;
};

enum class Scheme { TwoSided, OneSided, Global };

const char* op_name(Scheme s) {
  return s == Scheme::TwoSided ? "thread two-sided" : s == Scheme::OneSided ? "thread one-sided" : "global (sgemm + row check)";
}

void run_case(const AbftCase& ac, Scheme scheme) {
  Context& cx = ctx();
  const int64_t m = ac.m, n = ac.n, k = ac.k;
  const int nbuf = cx.rotation(size_t(m * k + k * n) * sizeof(float));
  std::vector<Buffer<float>> as, bs;
  // Weights' checksums are computed once, offline, as a deployed layer would: group sums for
  // the fused check, row sums (value, magnitude) for the global one.
  std::vector<std::vector<float>> groups;
  std::vector<std::vector<double>> bsum, babs;
  const int width = kintsugi::abft_group_width();
  for (int i = 0; i < nbuf; ++i) {
    as.emplace_back(size_t(m * k));
    as.back().fill_random(3000 + uint64_t(i));
    bs.emplace_back(size_t(k * n));
    bs.back().fill_random(4000 + uint64_t(i));
    groups.emplace_back(size_t(kintsugi::abft_group_sums_size(k, n, width)));
    kintsugi::abft_group_sums(Transpose::No, k, n, bs.back().data(), n, width, groups.back().data());
    bsum.emplace_back(size_t(k), 0.0);
    babs.emplace_back(size_t(k), 0.0);
    for (int64_t p = 0; p < k; ++p)
      for (int64_t j = 0; j < n; ++j) {
        bsum.back()[size_t(p)] += bs.back()[size_t(p * n + j)];
        babs.back()[size_t(p)] += std::fabs(bs.back()[size_t(p * n + j)]);
      }
  }
  Buffer<float> c(size_t(m * n)), cp(size_t(m * n));
  c.fill_zero();
  cp.fill_zero();
  const size_t rows = static_cast<size_t>(m);
  std::vector<double> expected(rows), magnitude(rows), actual(rows);
  auto args_for = [&](int64_t i, float* out) {
    return sgemm_args(Layout::RowMajor, false, false, m, n, k, as[size_t(i % nbuf)].data(), k, bs[size_t(i % nbuf)].data(), n, out, n);
  };
  int64_t flagged = 0;
  Call ours = [&](int64_t i) {
    const size_t s = size_t(i % nbuf);
    const kintsugi::SgemmArgs g = args_for(i, c.data());
    if (scheme == Scheme::Global) {
      kintsugi::sgemm(g);
      kintsugi::abft_row_check(Transpose::No, m, n, k, g.a, k, bsum[s].data(), babs[s].data(), g.c, n, expected.data(), magnitude.data(),
                               actual.data());
      for (int64_t r = 0; r < m; ++r)
        if (!(std::fabs(actual[size_t(r)] - expected[size_t(r)]) <= kintsugi::kAbftBoundScale * 0x1p-24 * magnitude[size_t(r)])) ++flagged;
      return;
    }
    kintsugi::AbftOptions o;
    o.check = scheme == Scheme::TwoSided ? kintsugi::AbftCheck::TwoSided : kintsugi::AbftCheck::OneSided;
    o.b_group_sums = groups[s].data();
    o.b_group_sums_len = int64_t(groups[s].size());
    o.b_group_width = width;
    flagged += int64_t(kintsugi::sgemm_checked(g, o).events.size());
  };
  Call peer = [&](int64_t i) { kintsugi::sgemm(args_for(i, cp.data())); };
  // Clean runs: the protected result agrees with the plain one (bit for bit where both take the
  // same driver path; sgemm may block a few-row problem differently) and nothing is flagged.
  Check check = [&] {
    if (!c.guards_ok()) return std::string("FAIL: write outside C");
    kintsugi::sgemm(args_for(0, cp.data()));
    ours(0);
    double scale = 0, diff = 0;
    for (int64_t q = 0; q < m * n; ++q) {
      scale = std::max(scale, double(std::fabs(cp[size_t(q)])));
      diff = std::max(diff, double(std::fabs(c[size_t(q)] - cp[size_t(q)])));
    }
    if (!(diff <= 1e-5 * scale)) return fmt("FAIL: C differs from sgemm by %.2e (scale %.2e)", diff, scale);
    return flagged == 0 ? std::string("ok") : fmt("FAIL: %ld false positives", long(flagged));
  };
  for (int t : cx.opt.threads) {
    cx.use_threads(t);
    Row r;
    r.section = "abft";
    r.group = ac.group;
    r.op = op_name(scheme);
    r.name = ac.name;
    r.shape = fmt("%ldx%ldx%ld NN", long(m), long(n), long(k));
    r.threads = t;
    r.buffers = nbuf;
    r.work = 2.0 * double(m) * double(n) * double(k);
    r.params = {{"m", double(m)}, {"n", double(n)}, {"k", double(k)}};
    r.peer = "sgemm unchecked";
    try {
      const Measured ms = cx.measure(ours, &peer, check, nullptr);
      r.ours = ms.ours;
      r.theirs = ms.theirs;
      r.check = ms.check;
      r.note = fmt("overhead %+.1f%% (medians), %+.1f%% (minima)", 100.0 * (ms.ours.median_ms / ms.theirs.median_ms - 1.0),
                   100.0 * (ms.ours.min_ms / ms.theirs.min_ms - 1.0));
    } catch (const std::exception& e) {
      r.check = std::string("FAIL: error: ") + e.what();
    }
    cx.emit(std::move(r));
  }
}

}  // namespace

std::vector<Case> abft_cases() {
  const Options& opt = ctx().opt;
  std::vector<AbftCase> list;
  for (int64_t s : {1024, 2048, 4096}) list.push_back({"square", "compute-bound", s, s, s});
  // DLRM MLPs (bottom 13-512-256-64, top 512-512-256-1: the layer shapes of Kosaian & Rashmi's
  // memory-bound case) at inference batch 1 and 8, and at the training batch 2048.
  const int64_t dlrm[][2] = {{13, 512}, {512, 256}, {256, 64}, {512, 512}, {256, 1}};
  for (int64_t b : {1, 8, 2048})
    for (const auto& l : dlrm) list.push_back({"dlrm", fmt("%ld-%ld batch %ld", long(l[0]), long(l[1]), long(b)), b, l[1], l[0]});
  // ResNet-50 convolutions in GEMM form (224x224, batch 1): M = OH*OW, N = Cout, K = Cin*KH*KW.
  const AbftCase resnet[] = {{"resnet50", "conv2 1x1 64-64", 3136, 64, 64},     {"resnet50", "conv2 3x3 64-64", 3136, 64, 576},
                             {"resnet50", "conv2 1x1 64-256", 3136, 256, 64},   {"resnet50", "conv3 3x3 128-128", 784, 128, 1152},
                             {"resnet50", "conv4 3x3 256-256", 196, 256, 2304}, {"resnet50", "conv5 3x3 512-512", 49, 512, 4608}};
  for (const auto& r : resnet) list.push_back(r);
  std::vector<Case> cases;
  for (const auto& ac : list) {
    if (opt.quick && 2.0 * double(ac.m) * double(ac.n) * double(ac.k) > 20e9) continue;
    for (Scheme s : {Scheme::TwoSided, Scheme::OneSided, Scheme::Global})
      cases.push_back({fmt("abft/%s/%s %s %ldx%ldx%ld", ac.group.c_str(), op_name(s), ac.name.c_str(), long(ac.m), long(ac.n), long(ac.k)),
                       [ac, s] { run_case(ac, s); }});
  }
  return cases;
}

}  // namespace kbench
