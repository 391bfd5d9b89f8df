// GEMM: squares, DeepBench shapes, the small-M inference case (plain and pre-packed B), pack_b.
// Peer: OpenBLAS cblas_sgemm with the same layout and transposes, timed interleaved.
#include <algorithm>
#include <cmath>
#include <exception>
#include <vector>

#include "bench.h"
#include "kintsugi/error.h"
#include "kintsugi/gemm.h"

namespace kbench {
namespace {

using kintsugi::Layout;
using kintsugi::Transpose;

struct GemmCase {
  std::string group;
  int64_t m, n, k;
  bool ta, tb;
  Layout layout;
  bool packed;
  std::string note;
};

// y[r] = sum_c X(r, c) * v[c] for a logical rows x cols matrix whose element (r, c) lies at
// x[r * ld + c] (row_store) or x[c * ld + r]; loops follow the storage order.
void matvec(const float* x, bool row_store, int64_t ld, int64_t rows, int64_t cols, const double* v, double* y) {
  if (row_store) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * ld;
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) s += double(xr[c]) * v[c];
      y[r] = s;
    }
  } else {
    std::fill(y, y + rows, 0.0);
    for (int64_t c = 0; c < cols; ++c) {
      const float* xc = x + c * ld;
      const double vc = v[c];
      for (int64_t r = 0; r < rows; ++r) y[r] += double(xc[r]) * vc;
    }
  }
}

// BLIS's check: C·t against A·(B·t) for a random vector t, in double. Cheap at any size; a wrong
// tile or a dropped k-slab moves the relative residual far above fp32 rounding (~1e-6).
std::string check_gemm(const kintsugi::SgemmArgs& g, const Buffer<float>& c) {
  if (!c.guards_ok()) return "FAIL: write outside C";
  const bool row = g.layout == Layout::RowMajor;
  std::vector<double> t(size_t(g.n)), bt(size_t(g.k)), abt(size_t(g.m)), ct(size_t(g.m));
  uint64_t s = 12345;
  for (auto& v : t) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    v = double(s >> 11) * (2.0 / 9007199254740992.0) - 1.0;
  }
  matvec(g.b, row != (g.trans_b == Transpose::Yes), g.ldb, g.k, g.n, t.data(), bt.data());
  matvec(g.a, row != (g.trans_a == Transpose::Yes), g.lda, g.m, g.k, bt.data(), abt.data());
  matvec(g.c, row, g.ldc, g.m, g.n, t.data(), ct.data());
  double num = 0, den = 0;
  for (int64_t i = 0; i < g.m; ++i) {
    num += (ct[size_t(i)] - abt[size_t(i)]) * (ct[size_t(i)] - abt[size_t(i)]);
    den += abt[size_t(i)] * abt[size_t(i)];
  }
  const double resid = std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
  if (!(resid <= 1e-4)) return fmt("FAIL: residual %.2e", resid);
  return "ok";
}

std::string shape_of(const GemmCase& c) {
  return fmt("%ldx%ldx%ld %c%c%s", long(c.m), long(c.n), long(c.k), c.ta ? 'T' : 'N', c.tb ? 'T' : 'N',
             c.layout == Layout::ColMajor ? " col" : "");
}

void run_case(const GemmCase& gc) {
  Context& cx = ctx();
  const bool row = gc.layout == Layout::RowMajor;
  const int64_t m = gc.m, n = gc.n, k = gc.k;
  const int64_t lda = row ? (gc.ta ? m : k) : (gc.ta ? k : m);
  const int64_t ldb = row ? (gc.tb ? k : n) : (gc.tb ? n : k);
  const int64_t ldc = row ? n : m;
  const size_t set_bytes = size_t(m * k + k * n) * sizeof(float);
  const int nbuf = cx.rotation(set_bytes);
  std::vector<Buffer<float>> as, bs;
  for (int i = 0; i < nbuf; ++i) {
    as.emplace_back(size_t(m * k));
    as.back().fill_random(1000 + uint64_t(i));
    bs.emplace_back(size_t(k * n));
    bs.back().fill_random(2000 + uint64_t(i));
  }
  Buffer<float> c(size_t(m * n)), cp(size_t(m * n));
  c.fill_zero();
  cp.fill_zero();
  std::vector<kintsugi::PackedMatrixPtr> packs;
  if (gc.packed)
    for (int i = 0; i < nbuf; ++i)
      packs.push_back(kintsugi::pack_b(gc.layout, gc.tb ? Transpose::Yes : Transpose::No, k, n, bs[size_t(i)].data(), ldb));

  auto args_for = [&](int64_t i, float* out) {
    return sgemm_args(gc.layout, gc.ta, gc.tb, m, n, k, as[size_t(i % nbuf)].data(), lda, bs[size_t(i % nbuf)].data(), ldb, out, ldc);
  };
  Call ours = [&](int64_t i) {
    auto g = args_for(i, c.data());
    if (gc.packed) kintsugi::sgemm_packed(g, *packs[size_t(i % nbuf)]);
    else kintsugi::sgemm(g);
  };
  OpenBlas& ob = openblas();
  Call peer = [&](int64_t i) {
    ob.sgemm(row ? kCblasRowMajor : kCblasColMajor, gc.ta ? kCblasTrans : kCblasNoTrans, gc.tb ? kCblasTrans : kCblasNoTrans,
             int(m), int(n), int(k), 1.0f, as[size_t(i % nbuf)].data(), int(lda), bs[size_t(i % nbuf)].data(), int(ldb), 0.0f,
             cp.data(), int(ldc));
  };
  Check check = [&] { return check_gemm(args_for(0, c.data()), c); };
  Check peer_check = [&] { return check_gemm(args_for(0, cp.data()), cp); };
  const bool with_peer = cx.opt.peers && ob.loaded;

  for (int t : cx.opt.threads) {
    cx.use_threads(t);
    Row r;
    r.section = "gemm";
    r.group = gc.group;
    r.op = gc.packed ? "sgemm_packed" : "sgemm";
    r.name = gc.group;
    r.shape = shape_of(gc);
    r.threads = t;
    r.buffers = nbuf;
    r.work = 2.0 * double(m) * double(n) * double(k);
    r.note = gc.note;
    r.params = {{"m", double(m)}, {"n", double(n)}, {"k", double(k)}, {"trans_a", gc.ta ? 1.0 : 0.0},
                {"trans_b", gc.tb ? 1.0 : 0.0}, {"col_major", row ? 0.0 : 1.0}};
    cx.measure_and_emit(std::move(r), ours, "openblas", with_peer ? &peer : nullptr, check, with_peer ? &peer_check : nullptr);
  }
}

// pack_b alone: what a constant weight costs once (bytes read + written).
void run_pack(int64_t k, int64_t n) {
  Context& cx = ctx();
  Buffer<float> b(size_t(k * n));
  b.fill_random(7);
  Call ours = [&](int64_t) { auto p = kintsugi::pack_b(Layout::RowMajor, Transpose::Yes, k, n, b.data(), k); };
  for (int t : cx.opt.threads) {
    cx.use_threads(t);
    Row r;
    r.section = "gemm";
    r.group = "pack";
    r.op = "pack_b";
    r.name = "weights [n, k]";
    r.shape = fmt("k=%ld n=%ld T", long(k), long(n));
    r.threads = t;
    r.work = 2.0 * double(k * n) * sizeof(float);
    r.bytes = true;
    r.params = {{"k", double(k)}, {"n", double(n)}};
    cx.measure_and_emit(std::move(r), ours, "", nullptr, Check(), nullptr);
  }
}

}  // namespace

std::vector<Case> gemm_cases() {
  const Options& opt = ctx().opt;
  std::vector<GemmCase> list;
  for (int64_t s : {256, 512, 1024, 2048, 4096}) list.push_back({"square", s, s, s, false, false, Layout::RowMajor, false, ""});
  // The inference case: a batch of M rows through a 4096x4096 layer. Weights as nn.Linear keeps
  // them ([n, k], so B is transposed) and as a plain [k, n] matrix, then pre-packed once.
  for (int64_t mm : {1, 4, 16, 64}) {
    list.push_back({"inference", mm, 4096, 4096, false, false, Layout::RowMajor, false, ""});
    list.push_back({"inference", mm, 4096, 4096, false, true, Layout::RowMajor, false, ""});
    list.push_back({"inference", mm, 4096, 4096, false, true, Layout::RowMajor, true, ""});
  }
  // DeepBench (baidu-research/DeepBench code/kernels/gemm_problems.h): m, n, k, a_t, b_t in its
  // column-major cuBLAS convention, kept here (col-major). A subset sized to a 2-core CPU: the
  // 24000/48000-wide and 4096x7000 training shapes are left out (minutes per row).
  struct DB { int64_t m, n, k; bool ta, tb; };
  const DB server[] = {{5124, 700, 2048, false, false}, {35, 700, 2048, false, false},   {5124, 1500, 2560, false, false},
                       {35, 1500, 2560, false, false},  {7680, 1, 2560, false, false},    {7680, 4, 2560, false, false},
                       {3072, 1, 1024, false, false},   {3072, 4, 1024, false, false},    {512, 1, 500000, false, false},
                       {512, 4, 500000, false, false},  {1024, 700, 512, false, false},   {7680, 1500, 2560, false, false},
                       {3072, 1500, 1024, false, false}, {8448, 1, 2816, false, false},   {512, 1500, 2816, false, false},
                       {1024, 3000, 2048, false, false}, {512, 1, 512, false, false},     {1024, 4, 512, false, false}};
  const DB train[] = {{1760, 16, 1760, false, false},  {1760, 128, 1760, false, false}, {1760, 7000, 1760, false, false},
                      {1760, 7000, 1760, true, false}, {2048, 7000, 2048, false, false}, {2560, 64, 2560, false, false},
                      {4096, 128, 4096, false, false}, {1760, 7133, 1760, false, true}, {5124, 9124, 1760, false, false},
                      {35, 8457, 1760, true, false},   {7680, 64, 2560, true, false},   {3072, 128, 1024, true, false},
                      {3072, 7435, 1024, false, true}, {512, 16, 500000, false, false}, {512, 8, 500000, true, false},
                      {1024, 700, 512, true, false},   {512, 24000, 2048, false, false}, {6144, 16, 2048, false, false}};
  for (const auto& d : server) list.push_back({"deepbench server", d.m, d.n, d.k, d.ta, d.tb, Layout::ColMajor, false, ""});
  for (const auto& d : train) list.push_back({"deepbench train", d.m, d.n, d.k, d.ta, d.tb, Layout::ColMajor, false, ""});

  std::vector<Case> cases;
  for (const auto& gc : list) {
    const double flops = 2.0 * double(gc.m) * double(gc.n) * double(gc.k);
    if (opt.quick && flops > 20e9) continue;  // --quick: seconds-long shapes are skipped
    const std::string name = "gemm/" + gc.group + "/" + (gc.packed ? "sgemm_packed " : "sgemm ") + shape_of(gc);
    cases.push_back({name, [gc] { run_case(gc); }});
  }
  cases.push_back({"gemm/pack/pack_b 4096x4096", [] { run_pack(4096, 4096); }});
  return cases;
}

}  // namespace kbench
