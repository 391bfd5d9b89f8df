// Coding kernels: XOR and float-sum parity encode over k = 4 blocks, the XOR delta update
// (xor_into) and row / column checksums. They are memory-bound, so rates are GB/s of bytes read +
// written; the peer is memcpy (split over the same threads) copying the bytes the kernel reads,
// and the ratio compares GB/s: 1.0 means as fast as copying.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <vector>

#include "bench.h"
#include "kintsugi/checksum.h"
#include "kintsugi/parity.h"

namespace kbench {
namespace {

constexpr int kBlocks = 4;

std::string size_name(size_t bytes) {
  if (bytes >= (size_t(1) << 20)) return fmt("%zu MiB", bytes >> 20);
  return fmt("%zu KiB", bytes >> 10);
}

// Runs the measurement over the thread counts and emits one row per count.
void measure_rows(const Row& base, const Call& ours, const Call& peer, const Check& check,
                  const std::function<void()>& before = nullptr) {
  Context& cx = ctx();
  for (int t : cx.opt.threads) {
    cx.use_threads(t);
    if (before) before();
    Row r = base;
    r.threads = t;
    cx.measure_and_emit(std::move(r), ours, "memcpy", cx.opt.peers ? &peer : nullptr, check, nullptr);
  }
}

// Input sets of k blocks each, rotated; memcpy peer copies a set's k blocks into `scratch`.
struct BlockSets {
  int nbuf = 1;
  std::vector<Buffer<uint8_t>> blocks;  // nbuf * k
  Buffer<uint8_t> scratch;
  BlockSets(size_t len, int k, size_t extra_per_set) {
    nbuf = ctx().rotation(len * size_t(k) + extra_per_set);
    for (int i = 0; i < nbuf * k; ++i) {
      blocks.emplace_back(len);
      blocks.back().fill_random(5000 + uint64_t(i));
    }
    scratch = Buffer<uint8_t>(len * size_t(k));
    scratch.fill_zero();
  }
};

void run_xor_encode(size_t len) {
  BlockSets s(len, kBlocks, 0);
  Buffer<uint8_t> parity(len);
  std::vector<const uint8_t*> ptrs(size_t(s.nbuf * kBlocks));
  for (size_t i = 0; i < ptrs.size(); ++i) ptrs[i] = s.blocks[i].data();
  Call ours = [&](int64_t i) { kintsugi::xor_encode(ptrs.data() + (i % s.nbuf) * kBlocks, kBlocks, len, parity.data()); };
  Call peer = [&](int64_t i) {
    for (int b = 0; b < kBlocks; ++b) parallel_memcpy(s.scratch.data() + size_t(b) * len, ptrs[size_t((i % s.nbuf) * kBlocks + b)], len);
  };
  Check check = [&]() -> std::string {
    if (!parity.guards_ok()) return "FAIL: write outside parity";
    for (size_t j = 0; j < len; ++j) {
      uint8_t v = 0;
      for (int b = 0; b < kBlocks; ++b) v ^= ptrs[size_t(b)][j];
      if (parity[j] != v) return fmt("FAIL: byte %zu", j);
    }
    return "ok";
  };
  Row r;
  r.section = "coding";
  r.group = "parity";
  r.op = "xor_encode";
  r.name = "k=4 blocks";
  r.shape = size_name(len) + " blocks";
  r.buffers = s.nbuf;
  r.bytes = true;
  r.work = double(len) * (kBlocks + 1);
  r.peer_work = 2.0 * double(len) * kBlocks;
  r.params = {{"k", kBlocks}, {"block_bytes", double(len)}};
  measure_rows(r, ours, peer, check);
}

void run_sum_encode(size_t len_bytes) {
  const size_t len = len_bytes / sizeof(float);
  const int nbuf = ctx().rotation(len_bytes * kBlocks);
  std::vector<Buffer<float>> blocks;
  for (int i = 0; i < nbuf * kBlocks; ++i) {
    blocks.emplace_back(len);
    blocks.back().fill_random(6000 + uint64_t(i));
  }
  Buffer<uint8_t> scratch(len_bytes * kBlocks);
  scratch.fill_zero();
  Buffer<float> parity(len);
  std::vector<const float*> ptrs(blocks.size());
  for (size_t i = 0; i < ptrs.size(); ++i) ptrs[i] = blocks[i].data();
  Call ours = [&](int64_t i) { kintsugi::sum_encode(ptrs.data() + (i % nbuf) * kBlocks, nullptr, kBlocks, len, parity.data()); };
  Call peer = [&](int64_t i) {
    for (int b = 0; b < kBlocks; ++b) parallel_memcpy(scratch.data() + size_t(b) * len_bytes, ptrs[size_t((i % nbuf) * kBlocks + b)], len_bytes);
  };
  Check check = [&]() -> std::string {
    if (!parity.guards_ok()) return "FAIL: write outside parity";
    for (size_t j = 0; j < len; ++j) {
      double v = 0, bound = 0;
      for (int b = 0; b < kBlocks; ++b) {
        v += ptrs[size_t(b)][j];
        bound += std::fabs(ptrs[size_t(b)][j]);
      }
      if (!(std::fabs(parity[j] - v) <= 1e-6 * bound + 1e-30)) return fmt("FAIL: element %zu", j);
    }
    return "ok";
  };
  Row r;
  r.section = "coding";
  r.group = "parity";
  r.op = "sum_encode";
  r.name = "k=4 blocks, coeffs 1";
  r.shape = size_name(len_bytes) + " blocks";
  r.buffers = nbuf;
  r.bytes = true;
  r.work = double(len_bytes) * (kBlocks + 1);
  r.peer_work = 2.0 * double(len_bytes) * kBlocks;
  r.params = {{"k", kBlocks}, {"block_bytes", double(len_bytes)}};
  measure_rows(r, ours, peer, check);
}

void run_xor_into(size_t len) {
  // Sets of (parity, delta): both rotate, as a delta update finds neither in cache.
  const int nbuf = ctx().rotation(2 * len);
  std::vector<Buffer<uint8_t>> dst, src;
  for (int i = 0; i < nbuf; ++i) {
    dst.emplace_back(len);
    dst.back().fill_random(7000 + uint64_t(i));
    src.emplace_back(len);
    src.back().fill_random(8000 + uint64_t(i));
  }
  Buffer<uint8_t> before(len), scratch(len);
  scratch.fill_zero();
  // The first call of a measurement is checked: snapshot what it will update.
  auto snapshot = [&] { std::memcpy(before.data(), dst[0].data(), len); };
  Call ours = [&](int64_t i) { kintsugi::xor_into(dst[size_t(i % nbuf)].data(), src[size_t(i % nbuf)].data(), len); };
  Call peer = [&](int64_t i) { parallel_memcpy(scratch.data(), src[size_t(i % nbuf)].data(), len); };
  Check check = [&]() -> std::string {
    if (!dst[0].guards_ok()) return "FAIL: write outside dst";
    for (size_t j = 0; j < len; ++j)
      if (dst[0][j] != uint8_t(before[j] ^ src[0][j])) return fmt("FAIL: byte %zu", j);
    return "ok";
  };
  Row r;
  r.section = "coding";
  r.group = "parity";
  r.op = "xor_into";
  r.name = "delta update";
  r.shape = size_name(len);
  r.buffers = nbuf;
  r.bytes = true;
  r.work = 3.0 * double(len);
  r.peer_work = 2.0 * double(len);
  r.params = {{"bytes", double(len)}};
  measure_rows(r, ours, peer, check, snapshot);
}

void run_checksum(bool rows_dir, int64_t m, int64_t n) {
  const size_t bytes = size_t(m * n) * sizeof(float);
  const int nbuf = ctx().rotation(bytes);
  std::vector<Buffer<float>> as;
  for (int i = 0; i < nbuf; ++i) {
    as.emplace_back(size_t(m * n));
    as.back().fill_random(9000 + uint64_t(i));
  }
  Buffer<uint8_t> scratch(bytes);
  scratch.fill_zero();
  Buffer<double> out(size_t(rows_dir ? m : n));
  Call ours = [&](int64_t i) {
    if (rows_dir) kintsugi::row_sums<float>(as[size_t(i % nbuf)].data(), m, n, n, out.data());
    else kintsugi::col_sums<float>(as[size_t(i % nbuf)].data(), m, n, n, out.data());
  };
  Call peer = [&](int64_t i) { parallel_memcpy(scratch.data(), as[size_t(i % nbuf)].data(), bytes); };
  Check check = [&]() -> std::string {
    if (!out.guards_ok()) return "FAIL: write outside out";
    const float* a = as[0].data();
    std::vector<double> ref(size_t(rows_dir ? m : n), 0.0), bound(ref.size(), 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const size_t o = size_t(rows_dir ? i : j);
        ref[o] += a[i * n + j];
        bound[o] += std::fabs(a[i * n + j]);
      }
    for (size_t o = 0; o < ref.size(); ++o)
      if (!(std::fabs(out[o] - ref[o]) <= 1e-12 * bound[o] + 1e-300)) return fmt("FAIL: output %zu", o);
    return "ok";
  };
  Row r;
  r.section = "coding";
  r.group = "checksum";
  r.op = rows_dir ? "row_sums" : "col_sums";
  r.name = "fp32 in, fp64 sums";
  r.shape = fmt("%ldx%ld", long(m), long(n));
  r.buffers = nbuf;
  r.bytes = true;
  r.work = double(bytes) + double(out.bytes());
  r.peer_work = 2.0 * double(bytes);
  r.params = {{"m", double(m)}, {"n", double(n)}};
  measure_rows(r, ours, peer, check);
}

}  // namespace

std::vector<Case> coding_cases() {
  const Options& opt = ctx().opt;
  std::vector<size_t> sizes;
  if (opt.quick) sizes = {4 << 10, 64 << 10, 1 << 20, 16 << 20};
  else
    for (size_t s = 4 << 10; s <= (size_t(64) << 20); s *= 4) sizes.push_back(s);
  std::vector<Case> cases;
  for (size_t s : sizes) cases.push_back({"coding/xor_encode " + size_name(s), [s] { run_xor_encode(s); }});
  for (size_t s : sizes) cases.push_back({"coding/sum_encode " + size_name(s), [s] { run_sum_encode(s); }});
  for (size_t s : sizes) cases.push_back({"coding/xor_into " + size_name(s), [s] { run_xor_into(s); }});
  std::vector<std::pair<int64_t, int64_t>> shapes = {{1024, 1024}, {4096, 4096}, {64, 65536}, {65536, 64}};
  if (opt.quick) shapes.resize(2);
  for (bool rows_dir : {true, false})
    for (auto [m, n] : shapes)
      cases.push_back({fmt("coding/%s %ldx%ld", rows_dir ? "row_sums" : "col_sums", long(m), long(n)),
                       [rows_dir, m = m, n = n] { run_checksum(rows_dir, m, n); }});
  return cases;
}

}  // namespace kbench
