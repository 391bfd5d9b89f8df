// kintsugi_bench: the native bench suite. `pnpm bench` (scripts/bench.mjs) runs it; see
// bench/README.md. Prints a markdown table as it goes and writes JSON (--json) and markdown (--md).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <fstream>
#include <set>
#include <string>

#include "bench.h"
#include "kintsugi/cpu.h"
#include "kintsugi/threadpool.h"

namespace kbench {
namespace {

const char* kUsage =
    "usage: kintsugi_bench [options]\n"
    "  --quick            small sizes only: conv2d at batch 1, GEMMs up to 20 GFLOP, fewer coding sizes\n"
    "  --filter S[,S...]  run only cases whose name contains one of the substrings (see --list)\n"
    "  --threads N        run at N threads only (default: 1 and all usable cores)\n"
    "  --reps N           timed repetitions per row and side (default: adaptive, %d..%d)\n"
    "  --batch N[,N...]   conv2d batch sizes (default 1,32; --quick: 1)\n"
    "  --json PATH        write the results as JSON\n"
    "  --md PATH          write the markdown report\n"
    "  --commit SHA       commit to stamp on every row (default: $KINTSUGI_COMMIT)\n"
    "  --hot              do not rotate inputs (measure with inputs in cache)\n"
    "  --no-peer          skip the peers (OpenBLAS, memcpy)\n"
    "  --list             print the case names and exit\n";

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  for (;;) {
    const size_t e = s.find(',', b);
    const std::string part = s.substr(b, e == std::string::npos ? std::string::npos : e - b);
    if (!part.empty()) out.push_back(part);
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return out;
}

[[noreturn]] void usage_error(const std::string& why) {
  std::fprintf(stderr, "kintsugi_bench: %s\n", why.c_str());
  std::fprintf(stderr, kUsage, Options().min_reps, Options().max_reps);
  std::exit(2);
}

long parse_positive(const std::string& flag, const char* v) {
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (!end || *end || n < 1) usage_error("expected a positive integer for " + flag + " but received '" + v + "'");
  return n;
}

void parse(int argc, char** argv, Options& o) {
  int threads = 0;
  bool batches_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage_error("missing value after " + a);
      return argv[++i];
    };
    if (a == "--quick") o.quick = true;
    else if (a == "--hot") o.hot = true;
    else if (a == "--no-peer" || a == "--no-peers") o.peers = false;
    else if (a == "--list") o.list = true;
    else if (a == "--filter") {
      for (auto& f : split(value())) o.filters.push_back(f);
    } else if (a == "--threads") threads = int(parse_positive(a, value()));
    else if (a == "--reps") o.reps = int(parse_positive(a, value()));
    else if (a == "--batch") {
      batches_given = true;
      for (auto& b : split(value())) o.batches.push_back(parse_positive(a, b.c_str()));
    } else if (a == "--json") o.json_path = value();
    else if (a == "--md") o.md_path = value();
    else if (a == "--commit") o.commit = value();
    else if (a == "-h" || a == "--help") {
      std::printf(kUsage, Options().min_reps, Options().max_reps);
      std::exit(0);
    } else if (a == "--") continue;
    else usage_error("unknown option '" + a + "'");
  }
  const int cores = kintsugi::cpu_info().logical_cores;
  if (threads > 0) o.threads = {threads};
  else if (cores > 1) o.threads = {1, cores};
  else o.threads = {1};
  if (!batches_given) o.batches = o.quick ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 32};
  if (o.quick) {
    o.target_s = 0.25;
    o.max_reps = 9;
    o.min_sample_s = 1e-3;
  }
}

std::string today_utc() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
  return buf;
}

std::string jnum(double v) {
  if (!std::isfinite(v)) return "null";
  return fmt("%.6g", v);
}

std::string stats_json(const Stats& s) {
  return fmt("{\"median_ms\": %s, \"min_ms\": %s, \"max_ms\": %s, \"reps\": %d, \"calls_per_rep\": %d}", jnum(s.median_ms).c_str(),
             jnum(s.min_ms).c_str(), jnum(s.max_ms).c_str(), s.reps, s.inner);
}

std::string peak_line(const Context& c) {
  std::string s = "- measured FMA peak (fp32 GFLOP/s, best 1 ms trial):";
  for (const auto& p : c.peaks) s += fmt(" %d thr: AVX-512 %.1f, AVX2 %.1f;", p.threads, p.avx512, p.avx2);
  s += " \"% peak\" is relative to the active ISA's figure at the row's threads";
  for (const auto& p : c.peaks) {
    const double measured = c.isa == "avx512" ? p.avx512 : p.avx2;
    const double used = c.peak_gflops(p.threads);
    if (std::isfinite(used) && used > measured * 1.0001)
      s += fmt(" (%d thr: %.1f = %d x the 1-thread figure, as the %d threads never ran the trial undisturbed together)", p.threads,
               used, p.threads, p.threads);
  }
  return s + "\n";
}

std::string q(const std::string& s) { return "\"" + json_escape(s) + "\""; }

void write_json(const Context& c, const std::string& path, bool complete) {
  std::string j = "{\n";
  j += "  \"schema\": \"kintsugi-bench/1\",\n";
  j += std::string("  \"complete\": ") + (complete ? "true" : "false") + ",\n";
  j += "  \"commit\": " + q(c.commit) + ",\n  \"host\": " + q(c.host) + ",\n  \"date\": " + q(c.date) + ",\n";
  j += "  \"cpu\": {\"brand\": " + q(c.cpu_brand) + ", \"logical_cores\": " + std::to_string(c.logical_cores) +
       ", \"l2_bytes\": " + std::to_string(c.l2_bytes) + ", \"l3_bytes\": " + std::to_string(c.l3_bytes) + "},\n";
  j += "  \"isa\": " + q(c.isa) + ",\n";
  j += "  \"threads\": [";
  for (size_t i = 0; i < c.opt.threads.size(); ++i) j += (i ? ", " : "") + std::to_string(c.opt.threads[i]);
  j += "],\n  \"fma_peak_gflops\": [";
  for (size_t i = 0; i < c.peaks.size(); ++i)
    j += std::string(i ? ", " : "") + "{\"threads\": " + std::to_string(c.peaks[i].threads) + ", \"avx512\": " + jnum(c.peaks[i].avx512) +
         ", \"avx2\": " + jnum(c.peaks[i].avx2) + ", \"used_for_pct_peak\": " + jnum(c.peak_gflops(c.peaks[i].threads)) + "}";
  j += "],\n";
  const OpenBlas& ob = openblas();
  j += "  \"peers\": {\"openblas\": " + (ob.loaded ? "{\"library\": " + q(ob.path) + ", \"config\": " + q(ob.config) + ", \"core\": " + q(ob.corename) + "}" : "null") +
       ", \"openblas_missing\": " + (ob.loaded ? std::string("null") : q(ob.why)) + ", \"memcpy\": \"glibc memcpy, split over the same threads\"},\n";
  j += fmt("  \"options\": {\"quick\": %s, \"hot\": %s, \"peers\": %s, \"reps\": %d, \"target_s\": %g, \"filters\": [", c.opt.quick ? "true" : "false",
           c.opt.hot ? "true" : "false", c.opt.peers ? "true" : "false", c.opt.reps, c.opt.target_s);
  for (size_t i = 0; i < c.opt.filters.size(); ++i) j += (i ? ", " : "") + q(c.opt.filters[i]);
  j += "]},\n  \"notes\": [";
  for (size_t i = 0; i < c.notes.size(); ++i) j += std::string(i ? ",\n    " : "\n    ") + q(c.notes[i]);
  j += "\n  ],\n  \"rows\": [";
  for (size_t i = 0; i < c.rows.size(); ++i) {
    const Row& r = c.rows[i];
    j += i ? ",\n    {" : "\n    {";
    j += "\"section\": " + q(r.section) + ", \"group\": " + q(r.group) + ", \"op\": " + q(r.op) + ", \"name\": " + q(r.name) +
         ", \"shape\": " + q(r.shape) + ", \"count\": " + std::to_string(r.count);
    j += ", \"params\": {";
    for (size_t p = 0; p < r.params.size(); ++p) j += (p ? ", " : "") + q(r.params[p].first) + ": " + jnum(r.params[p].second);
    j += "}, \"threads\": " + std::to_string(r.threads) + ", \"commit\": " + q(c.commit) + ", \"cpu\": " + q(c.cpu_brand) +
         ", \"isa\": " + q(c.isa) + ", \"rotated_input_sets\": " + std::to_string(r.buffers);
    j += ", \"time\": " + stats_json(r.ours);
    j += std::string(", \"unit\": ") + (r.bytes ? "\"GB/s\"" : "\"GFLOP/s\"") + ", \"work\": " + jnum(r.work) + ", \"rate\": " + jnum(r.rate) +
         ", \"pct_peak\": " + jnum(r.pct_peak);
    j += ", \"check\": " + q(r.check);
    if (!r.peer.empty()) {
      j += ", \"peer\": {\"name\": " + q(r.peer) + ", \"time\": " + stats_json(r.theirs) + ", \"work\": " +
           jnum(r.peer_work > 0 ? r.peer_work : r.work) + ", \"rate\": " + jnum(r.peer_rate) + ", \"check\": " + (r.peer_check.empty() ? std::string("null") : q(r.peer_check)) + "}";
      j += ", \"ratio\": " + jnum(r.ratio);
    } else {
      j += ", \"peer\": null, \"ratio\": null";
    }
    if (!r.note.empty()) j += ", \"note\": " + q(r.note);
    j += "}";
  }
  j += "\n  ]\n}\n";
  std::ofstream f(path);
  f << j;
  if (!f) std::fprintf(stderr, "kintsugi_bench: could not write %s\n", path.c_str());
}

}  // namespace
}  // namespace kbench

int main(int argc, char** argv) {
  using namespace kbench;
  Context& c = ctx();
  parse(argc, argv, c.opt);

  std::vector<std::pair<std::string, std::vector<Case>>> suites = {
      {"gemm", gemm_cases()}, {"conv2d", conv_cases()}, {"coding", coding_cases()}, {"abft", abft_cases()}, {"cuda", cuda_cases()}};
  if (c.opt.list) {
    for (auto& [name, cases] : suites)
      for (auto& cs : cases)
        if (c.selected(cs.name)) std::printf("%s\n", cs.name.c_str());
    return 0;
  }

  const auto& cpu = kintsugi::cpu_info();
  c.commit = !c.opt.commit.empty() ? c.opt.commit : (std::getenv("KINTSUGI_COMMIT") ? std::getenv("KINTSUGI_COMMIT") : "unknown");
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "unknown-host");
  c.host = host;
  c.date = today_utc();
  c.cpu_brand = cpu.brand;
  c.isa = kintsugi::isa_name(kintsugi::active_isa());
  c.logical_cores = cpu.logical_cores;
  c.l2_bytes = cpu.l2_bytes;
  c.l3_bytes = cpu.l3_bytes;
  if (c.opt.peers) load_openblas();

  // The measured peak: FMA throughput at each thread count this run uses.
  const double peak_s = c.opt.quick ? 0.15 : 0.4;
  double one_thread = NAN;
  std::vector<int> peak_threads = c.opt.threads;
  if (std::find(peak_threads.begin(), peak_threads.end(), 1) == peak_threads.end()) peak_threads.insert(peak_threads.begin(), 1);
  for (int t : peak_threads) {
    Peaks p;
    p.threads = t;
    p.avx512 = measure_fma_gflops(true, t, peak_s);
    p.avx2 = measure_fma_gflops(false, t, peak_s);
    // On a shared machine the threads may never have run together: try again a few times while
    // the figure is below t x the one-thread figure (it stays below on SMT siblings; that costs
    // a second or two).
    for (int attempt = 0; attempt < 3 && t > 1 && std::isfinite(one_thread); ++attempt) {
      const double best = std::isfinite(p.avx512) ? p.avx512 : p.avx2;
      if (best >= 0.9 * t * one_thread) break;
      p.avx512 = std::max(p.avx512, measure_fma_gflops(true, t, peak_s));
      p.avx2 = std::max(p.avx2, measure_fma_gflops(false, t, peak_s));
    }
    if (t == 1) one_thread = std::isfinite(p.avx512) ? p.avx512 : p.avx2;
    c.peaks.push_back(p);
  }

  std::string head = "## Kintsugi native bench\n\n";
  head += fmt("- commit `%s`, host `%s`, %s (UTC)\n", c.commit.c_str(), c.host.c_str(), c.date.c_str());
  head += fmt("- CPU: %s, %d usable logical cores, L2 %ld KiB, L3 %ld MiB; kernels use ISA **%s**\n", c.cpu_brand.c_str(), c.logical_cores,
              long(c.l2_bytes >> 10), long(c.l3_bytes >> 20), c.isa.c_str());
  const std::string first_peaks = peak_line(c);
  head += first_peaks;
  const OpenBlas& ob = openblas();
  if (!c.opt.peers) head += "- peers: skipped (--no-peer)\n";
  else if (ob.loaded) head += fmt("- peers: OpenBLAS (%s, %s, core %s), threads set to match ours; memcpy for the coding kernels\n", ob.path.c_str(), ob.config.c_str(), ob.corename.c_str());
  else head += "- peers: **OpenBLAS not measured**: " + ob.why + "; memcpy for the coding kernels\n";
  head += "- onnxruntime-node is a Node peer and is not measured by this native bench\n";
  head += fmt("- method: warm-up apart; buffers allocated once per case; inputs rotated over copies totalling >= 2x the %s MiB last-level cache%s; "
              "ours and the peer timed interleaved, alternating order; median/min/max over the timed repetitions (fast calls timed in "
              "batches, times per call); ratio = our rate / peer rate (> 1: we are faster)\n",
              std::to_string(std::max(c.l2_bytes, c.l3_bytes) >> 20).c_str(), c.opt.hot ? " (off: --hot)" : "");
  if (c.opt.quick) head += "- **--quick**: reduced sizes, conv2d at batch 1 only, short time budget per row\n";
  if (!c.opt.filters.empty()) {
    head += "- filter:";
    for (auto& f : c.opt.filters) head += " `" + f + "`";
    head += "\n";
  }
  c.print(head);
  c.notes.push_back("DeepBench shapes come from baidu-research/DeepBench code/kernels/gemm_problems.h (m, n, k, a_t, b_t, column-major as "
                    "there); a subset sized to this machine: shapes with n = 24000/48000 and the 4096x7000 family are left out");
  c.notes.push_back("conv2d: ResNet-50 is torchvision's v1.5 (stride on the 3x3 conv); no bias; layers sharing a shape are one row with their count");
  c.notes.push_back("coding rates are GB/s of bytes read + written; the memcpy peer copies the bytes the kernel reads");
  c.notes.push_back("onnxruntime-node is a Node peer and is not measured by this native bench");
  if (c.opt.peers && !ob.loaded) c.notes.push_back("OpenBLAS not measured: " + ob.why);

  const double t0 = seconds_now();
  const char* titles[] = {"GEMM (sgemm, fp32)", "conv2d forward (fp32, NCHW)", "coding kernels", "checksum-protected GEMM (ABFT)", "CUDA (GPU)"};
  const char* texts[] = {"m x n x k with op(A), op(B) transposes; `col` = column-major (DeepBench's convention). The inference group is a "
                         "batch of M rows through a 4096x4096 layer: B as [k, n] (NN), as nn.Linear weights [n, k] (NT), and pre-packed "
                         "once with pack_b (sgemm_packed; the peer runs plain cblas_sgemm NT). Check: C·t vs A·(B·t).",
                         "Per layer, 224x224 input. Peer: per-image im2col (our pool's threads) + OpenBLAS sgemm. Check: 256 sampled "
                         "outputs recomputed in double.",
                         "k = 4 blocks. Peer: memcpy of the kernel's input bytes over the same threads. Check: full comparison.",
                         "The same GEMM unprotected is the peer, timed interleaved on the same inputs: overhead = 1 / ratio - 1. Thread "
                         "schemes check every register tile from its accumulators (sgemm_checked, weights' group sums precomputed); "
                         "global is sgemm then the row check against B's offline row sums. Check: C equal to sgemm's bit for bit, no "
                         "event on clean runs.",
                         "Timed with CUDA events, ours and the peer interleaved on one stream. GEMM peer: cuBLAS (cublasGemmEx, same dtypes, "
                         "fp32 accumulation); check: max |ours - cuBLAS| / max |cuBLAS|. % of peak: SMs x SM clock x FLOP/clock/SM of the "
                         "architecture and dtype. Coding peer: device-to-device cudaMemcpy of one block (bytes read + written)."};
  int failed = 0;
  for (size_t si = 0; si < suites.size(); ++si) {
    bool header = false;
    for (auto& cs : suites[si].second) {
      if (!c.selected(cs.name)) continue;
      if (!header) {
        c.section(titles[si], texts[si]);
        header = true;
      }
      try {
        cs.run();
      } catch (const std::exception& e) {
        c.print("| " + cs.name + " | **error: " + e.what() + "** |\n");
        ++failed;
      }
      // Save as we go: a long run that is stopped keeps what it measured ("complete": false).
      if (!c.opt.json_path.empty()) write_json(c, c.opt.json_path, false);
      if (!c.opt.md_path.empty()) {
        std::ofstream f(c.opt.md_path);
        f << c.render() << "\n(incomplete: the run was still going or was stopped)\n";
      }
    }
    if (suites[si].first == "conv2d" && header) conv_sums();
  }
  for (const auto& r : c.rows)
    if (r.check.rfind("FAIL", 0) == 0) ++failed;
  c.print(fmt("\n%zu rows in %.0f s; %d failed checks or errors.\n", c.rows.size(), seconds_now() - t0, failed));

  // The peak again: on a shared machine the start-up figure may have been taken while other work
  // held the cores. The files use the better of the two.
  std::string again = "FMA peak re-measured at the end:";
  for (auto& p : c.peaks) {
    const double a512 = measure_fma_gflops(true, p.threads, peak_s), a2 = measure_fma_gflops(false, p.threads, peak_s);
    again += fmt(" %d thr: AVX-512 %.1f, AVX2 %.1f;", p.threads, a512, a2);
    if (a512 > p.avx512) p.avx512 = a512;
    if (a2 > p.avx2) p.avx2 = a2;
  }
  again += " the JSON and markdown files use the higher of the two.\n";
  c.print(again);
  std::string md = c.render();
  const size_t at = md.find(first_peaks);
  if (at != std::string::npos) md.replace(at, first_peaks.size(), peak_line(c));
  if (!c.opt.json_path.empty()) write_json(c, c.opt.json_path, true);
  if (!c.opt.md_path.empty()) {
    std::ofstream f(c.opt.md_path);
    f << md;
  }
  return failed ? 1 : 0;
}
