// The addon's exports. Each function reads and checks its arguments on the JS thread (args.h),
// captures plain C++ values in a Job, and runs the kernel inline (*Sync in TS) or on the addon's
// runner threads (Promise; call.cc). Functions taking `async` as their first argument support both.
#include <napi.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <cstdlib>
#include <cstring>

#include "args.h"
#include "kintsugi/abft.h"
#include "call.h"
#include "kintsugi/checksum.h"
#include "kintsugi/conv.h"
#include "kintsugi/cpu.h"
#include "kintsugi/device.h"
#include "kintsugi/elementwise.h"
#include "kintsugi/embedding.h"
#include "kintsugi/gemm.h"
#include "kintsugi/norm.h"
#include "kintsugi/parity.h"
#include "kintsugi/reed_solomon.h"
#include "kintsugi/threadpool.h"

namespace kintsugi::binding {

void register_nvml(Napi::Env env, Napi::Object exports);  // nvml.cc
void register_cuda(Napi::Env env, Napi::Object exports);  // cuda.cc

namespace {

// The PackedMatrix constructor of this environment (each worker_thread has its own).
Napi::FunctionReference& packed_ctor(Napi::Env env);

// ---- A packed GEMM operand: a native handle with an explicit dispose() ----
class PackedMatrixHandle : public Napi::ObjectWrap<PackedMatrixHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PackedMatrix",
                       {InstanceMethod<&PackedMatrixHandle::Dispose>("dispose"),
                        InstanceAccessor<&PackedMatrixHandle::Rows>("rows"),
                        InstanceAccessor<&PackedMatrixHandle::Cols>("cols"),
                        InstanceAccessor<&PackedMatrixHandle::Disposed>("disposed")});
  }
  explicit PackedMatrixHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PackedMatrixHandle>(info) {}

  void set(std::shared_ptr<PackedMatrix> packed, int64_t rows, int64_t cols) {
    packed_ = std::move(packed);
    rows_ = rows;
    cols_ = cols;
  }
  // In-flight async calls hold their own reference, so dispose() during a call is safe.
  std::shared_ptr<PackedMatrix> get(const std::string& name) const {
    if (!packed_) throw_expected(ErrorKind::Type, "a live PackedMatrix", name, "a disposed PackedMatrix");
    return packed_;
  }

 private:
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    packed_.reset();
    return info.Env().Undefined();
  }
  Napi::Value Rows(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(rows_)); }
  Napi::Value Cols(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(cols_)); }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !packed_); }

  std::shared_ptr<PackedMatrix> packed_;
  int64_t rows_ = 0, cols_ = 0;
};

Layout read_layout(const Args& a, size_t i) { return a.choice(i, "layout", {"row", "col"}) == "row" ? Layout::RowMajor : Layout::ColMajor; }
Transpose read_trans(const Args& a, size_t i, const char* name) { return a.boolean(i, name) ? Transpose::Yes : Transpose::No; }

// ---- devices, CPU information, threads ----
Napi::Value Devices(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto list = list_devices();
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      const DeviceInfo& d = list[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("kind", d.kind == DeviceKind::Cpu ? "cpu" : "cuda");
      o.Set("index", d.index);
      o.Set("name", d.name);
      o.Set("totalMemory", double(d.total_memory));
      o.Set("threads", d.threads);
      o.Set("multiprocessors", d.multiprocessors);
      o.Set("isa", d.isa);
      if (d.kind == DeviceKind::Cuda) {
        o.Set("clockKHz", d.clock_khz);
        o.Set("computeCapability", std::to_string(d.compute_major) + "." + std::to_string(d.compute_minor));
      }
      out.Set(uint32_t(i), o);
    }
    return out;
  });
}

Napi::Value CudaStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string why;
  int count = cuda::device_count(&why);
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiled", cuda::compiled());
  o.Set("deviceCount", count);
  o.Set("reason", why);
  return o;
}

Napi::Value CpuInfoValue(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CpuInfo& c = cpu_info();
  Napi::Object o = Napi::Object::New(env);
  o.Set("brand", c.brand);
  o.Set("logicalCores", c.logical_cores);
  o.Set("bestIsa", isa_name(best_isa()));
  o.Set("activeIsa", isa_name(active_isa()));
  o.Set("avx2", c.avx2);
  o.Set("fma", c.fma);
  o.Set("avx512", best_isa() == Isa::Avx512);
  o.Set("l1dBytes", double(c.l1d_bytes));
  o.Set("l2Bytes", double(c.l2_bytes));
  o.Set("l3Bytes", double(c.l3_bytes));
  return o;
}

// Freed-memory retention (glibc). Kernels write into fresh typed arrays, and a fresh page costs
// ~1-2.5 us to fault in on a VM: a small layer's output can cost more than its kernel. glibc
// serves allocations below its mmap threshold from the heap and keeps freed heap memory below its
// trim threshold, but raises both from 128 KiB only after a large block has been freed (to at
// most 32 MiB and twice that); until then, and each time the garbage collector frees a batch of
// outputs at the top of the heap (trimmed back to the OS at once), every new output faults in
// afresh. Both are set to glibc's own ceilings at load, so up to 64 MiB of freed memory is kept
// for the next outputs. Measured on the 2-vCPU Zen 4 VM, a ResNet-18 1x1 stride-2 conv at batch 1
// with a fresh output: 252-297 us before, 214-218 after (166-177 into a reused one).
// KINTSUGI_MALLOC_TUNE=0 leaves malloc alone, as does any MALLOC_*_ or GLIBC_TUNABLES setting.
struct MallocTuning {
  bool tuned = false;
  long mmap_threshold = 0, trim_threshold = 0;
};
const MallocTuning& malloc_tuning() {
  static const MallocTuning t = [] {
    MallocTuning r;
#if defined(__GLIBC__)
    const char* opt = std::getenv("KINTSUGI_MALLOC_TUNE");
    const bool user_set = std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_") || std::getenv("GLIBC_TUNABLES");
    if ((opt && std::strcmp(opt, "0") == 0) || user_set) return r;
    constexpr long kMmapThreshold = 32L << 20;  // glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
    r.tuned = mallopt(M_MMAP_THRESHOLD, int(kMmapThreshold)) == 1 && mallopt(M_TRIM_THRESHOLD, int(2 * kMmapThreshold)) == 1;
    if (r.tuned) {
      r.mmap_threshold = kMmapThreshold;
      r.trim_threshold = 2 * kMmapThreshold;
    }
#endif
    return r;
  }();
  return t;
}

Napi::Value MallocTuningValue(const Napi::CallbackInfo& info) {
  const MallocTuning& t = malloc_tuning();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("tuned", t.tuned);
  o.Set("mmapThresholdBytes", double(t.mmap_threshold));
  o.Set("trimThresholdBytes", double(t.trim_threshold));
  return o;
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), num_threads()); }

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    set_num_threads(int(Args(info).integer(0, "threads", 1, 1024)));
    return info.Env().Undefined();
  });
}

// Marks the calling JS thread (a worker thread doing background work) as a background thread.
Napi::Value SetThreadBackground(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), set_thread_background()); }

Napi::Value GetSpinMicros(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), spin_us()); }

Napi::Value SetSpinMicros(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    set_spin_us(int(Args(info).integer(0, "microseconds", 0, 1000000)));
    return info.Env().Undefined();
  });
}

Napi::Value SetIsaLimit(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    std::string isa = Args(info).choice(0, "isa", {"portable", "avx2", "avx512"});
    set_isa_limit(isa == "portable" ? Isa::Portable : isa == "avx2" ? Isa::Avx2 : Isa::Avx512);
    return Napi::String::New(info.Env(), isa_name(active_isa()));
  });
}

// ---- GEMM ----
// The GEMM arguments shared by sgemm and sgemmChecked, from argument 0 of `a`:
// layout, transA, transB, m, n, k, alpha, a, lda, b, ldb, [beta,] c, ldc. Returns the index of the
// next argument. Extents are checked by the caller (check_sgemm / check_sgemm_checked).
struct GemmOperands {
  SgemmArgs g;
  Array<float> A, B, C;
  size_t next = 0;
};

GemmOperands read_gemm_operands(const Args& a, bool with_beta) {
  GemmOperands o;
  SgemmArgs& g = o.g;
  g.layout = read_layout(a, 0);
  g.trans_a = read_trans(a, 1, "transA");
  g.trans_b = read_trans(a, 2, "transB");
  g.m = a.integer(3, "m", 0, kMaxDim);
  g.n = a.integer(4, "n", 0, kMaxDim);
  g.k = a.integer(5, "k", 0, kMaxDim);
  g.alpha = float(a.number(6, "alpha"));
  o.A = a.array<float>(7, "a");
  g.lda = a.integer(8, "lda", 1, kMaxDim);
  o.B = a.array<float>(9, "b");
  g.ldb = a.integer(10, "ldb", 1, kMaxDim);
  size_t i = 11;
  if (with_beta) g.beta = float(a.number(i++, "beta"));
  o.C = a.array<float>(i++, "c");
  g.ldc = a.integer(i++, "ldc", 1, kMaxDim);
  check_no_overlap(o.C, o.A);
  check_no_overlap(o.C, o.B);
  g.a = o.A.data;
  g.b = o.B.data;
  g.c = o.C.data;
  o.next = i;
  return o;
}

// sgemm(async, layout, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    GemmOperands op = read_gemm_operands(Args(info, 1), true);
    check_sgemm(op.g, op.A.length, op.B.length, op.C.length);
    SgemmArgs g = op.g;
    return Job{[g] { sgemm(g); }, op.C.value, {op.A.value, op.B.value, op.C.value}};
  });
}

// packB(layout, transB, k, n, b, ldb) -> PackedMatrix
Napi::Value PackB(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Args a(info);
    Layout layout = read_layout(a, 0);
    Transpose tb = read_trans(a, 1, "transB");
    int64_t k = a.integer(2, "k", 0, kMaxDim), n = a.integer(3, "n", 0, kMaxDim);
    auto B = a.array<float>(4, "b");
    int64_t ldb = a.integer(5, "ldb", 1, kMaxDim);
    // Validate B's extent through check_sgemm with a 1-row A and C that are never touched.
    SgemmArgs g;
    g.layout = layout;
    g.trans_b = tb;
    g.m = 0;
    g.n = n;
    g.k = k;
    g.lda = layout == Layout::RowMajor ? std::max<int64_t>(1, k) : 1;
    g.ldb = ldb;
    g.ldc = layout == Layout::RowMajor ? std::max<int64_t>(1, n) : 1;
    check_sgemm(g, 0, B.length, 0);
    std::shared_ptr<PackedMatrix> packed(pack_b(layout, tb, k, n, B.data, ldb).release(), PackedMatrixDeleter());
    Napi::Object handle = packed_ctor(info.Env()).New({});
    PackedMatrixHandle::Unwrap(handle)->set(std::move(packed), k, n);
    return handle;
  });
}

PackedMatrixHandle* read_packed(const Args& a, size_t i, const char* name) {
  Napi::Value v = a.value(i);
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(packed_ctor(a.env()).Value()))
    throw_expected(ErrorKind::Type, "a PackedMatrix", name, describe(v));
  return PackedMatrixHandle::Unwrap(v.As<Napi::Object>());
}

// sgemmPacked(async, layout, transA, m, alpha, a, lda, packed, beta, c, ldc)
Napi::Value SgemmPacked(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    SgemmArgs g;
    g.layout = read_layout(a, 0);
    g.trans_a = read_trans(a, 1, "transA");
    g.m = a.integer(2, "m", 0, kMaxDim);
    g.alpha = float(a.number(3, "alpha"));
    auto A = a.array<float>(4, "a");
    g.lda = a.integer(5, "lda", 1, kMaxDim);
    std::shared_ptr<PackedMatrix> packed = read_packed(a, 6, "packed")->get("packed");
    g.beta = float(a.number(7, "beta"));
    auto C = a.array<float>(8, "c");
    g.ldc = a.integer(9, "ldc", 1, kMaxDim);
    check_no_overlap(C, A);
    g.k = packed_rows(*packed);
    g.n = packed_cols(*packed);
    g.a = A.data;
    g.c = C.data;
    // B is the packed operand: validate A and C only, with a B extent that always fits.
    SgemmArgs shape = g;
    shape.trans_b = Transpose::No;
    shape.ldb = g.layout == Layout::RowMajor ? std::max<int64_t>(1, g.n) : std::max<int64_t>(1, g.k);
    check_sgemm(shape, A.length, int64_t(9.0e15), C.length);
    return Job{[g, packed] { sgemm_packed(g, *packed); }, C.value, {A.value, C.value, a.value(6)}};
  });
}

// ---- checksum-protected GEMM (ABFT) ----
// Report layout (Float64Array): [tiles, maxRatio, eventCount, then per event kAbftEventFields
// values: row0, col0, rows, cols, residual, bound, row, col, before, after, action (0 corrected,
// 1 recomputed, 2 detected)]; events past the array's capacity are counted but not written.
constexpr int64_t kAbftEventFields = 11;

// sgemmChecked(async, layout, transA, transB, m, n, k, alpha, a, lda, b, ldb, c, ldc,
//              check, tolerance, correct, groupSums|null, groupWidth, report)
Napi::Value SgemmChecked(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    GemmOperands op = read_gemm_operands(a, false);
    SgemmArgs g = op.g;
    auto &A = op.A, &B = op.B, &C = op.C;
    AbftOptions o;
    o.check = a.choice(13, "check", {"one-sided", "two-sided"}) == "one-sided" ? AbftCheck::OneSided : AbftCheck::TwoSided;
    o.tolerance = a.number(14, "tolerance");
    o.correct = a.boolean(15, "correct");
    auto G = a.array<float>(16, "groupSums", true);
    o.b_group_width = int(a.integer(17, "groupWidth", 0, 4096));
    auto R = a.array<double>(18, "report");
    check_min_length(R, 3);
    check_no_overlap(C, G);
    if (G.present()) {
      o.b_group_sums = G.data;
      o.b_group_sums_len = G.length;
    }
    check_sgemm_checked(g, o, A.length, B.length, C.length);
    double* report = R.data;
    const int64_t capacity = (R.length - 3) / kAbftEventFields;
    return Job{[g, o, report, capacity] {
                 AbftReport r = sgemm_checked(g, o);
                 report[0] = double(r.tiles);
                 report[1] = r.max_ratio;
                 report[2] = double(r.events.size());
                 for (int64_t e = 0; e < capacity && e < int64_t(r.events.size()); ++e) {
                   const AbftEvent& v = r.events[size_t(e)];
                   double* d = report + 3 + e * kAbftEventFields;
                   const double f[kAbftEventFields] = {double(v.row0), double(v.col0), double(v.rows), double(v.cols), v.residual, v.bound,
                                                       double(v.row), double(v.col), double(v.before), double(v.after),
                                                       v.action == AbftAction::Corrected ? 0.0 : v.action == AbftAction::Recomputed ? 1.0 : 2.0};
                   for (int64_t q = 0; q < kAbftEventFields; ++q) d[q] = f[q];
                 }
               },
               R.value, {A.value, B.value, C.value, a.value(16), R.value}};
  });
}

// abftGroupWidth() -> columns per checksum group for the active kernels
Napi::Value AbftGroupWidth(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value { return Napi::Number::New(info.Env(), abft_group_width()); });
}

// abftGroupSums(transB, k, n, b, ldb, width, out) -> out (synchronous; weights are summed once)
Napi::Value AbftGroupSums(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Args a(info);
    Transpose tb = read_trans(a, 0, "transB");
    int64_t k = a.integer(1, "k", 0, kMaxDim), n = a.integer(2, "n", 0, kMaxDim);
    auto B = a.array<float>(3, "b");
    int64_t ldb = a.integer(4, "ldb", 1, kMaxDim);
    int width = int(a.integer(5, "width", 1, 4096));
    auto O = a.array<float>(6, "out");
    SgemmArgs g;
    g.trans_b = tb;
    g.k = k;
    g.n = n;
    g.lda = std::max<int64_t>(1, k);
    g.ldb = ldb;
    g.ldc = std::max<int64_t>(1, n);
    check_sgemm(g, 0, B.length, 0);
    check_min_length(O, abft_group_sums_size(k, n, width));
    check_no_overlap(O, B);
    abft_group_sums(tb, k, n, B.data, ldb, width, O.data);
    return O.value;
  });
}

// abftRowCheck(async, transA, m, n, k, a, lda, bsum, babs, c, ldc, expected, magnitude, actual)
Napi::Value AbftRowCheck(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    Transpose ta = read_trans(a, 0, "transA");
    int64_t m = a.integer(1, "m", 0, kMaxDim), n = a.integer(2, "n", 0, kMaxDim), k = a.integer(3, "k", 0, kMaxDim);
    auto A = a.array<float>(4, "a");
    int64_t lda = a.integer(5, "lda", 1, kMaxDim);
    auto BS = a.array<double>(6, "bsum"), BA = a.array<double>(7, "babs");
    auto C = a.array<float>(8, "c");
    int64_t ldc = a.integer(9, "ldc", 1, kMaxDim);
    auto E = a.array<double>(10, "expected"), M = a.array<double>(11, "magnitude"), R = a.array<double>(12, "actual");
    // Validation only (B is never read): the GEMM shape that produced C.
    SgemmArgs g = row_major_args(m, n, k, nullptr, lda, nullptr, std::max<int64_t>(1, n), nullptr, ldc);
    g.trans_a = ta;
    check_sgemm(g, A.length, std::numeric_limits<int64_t>::max(), C.length);
    check_min_length(BS, k);
    check_min_length(BA, k);
    check_min_length(E, m);
    check_min_length(M, m);
    check_min_length(R, m);
    const float *ap = A.data, *cp = C.data;
    const double *bs = BS.data, *ba = BA.data;
    double *e = E.data, *mg = M.data, *r = R.data;
    return Job{[=] { abft_row_check(ta, m, n, k, ap, lda, bs, ba, cp, ldc, e, mg, r); }, R.value,
               {A.value, BS.value, BA.value, C.value, E.value, M.value, R.value}};
  });
}

// sgemmRowChecked(async, layout, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
//                 bsum, babs, expected, magnitude, actual): the global scheme's GEMM and row check
// in one job (one trip through the thread pool for small layers).
Napi::Value SgemmRowChecked(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    GemmOperands op = read_gemm_operands(a, true);
    const SgemmArgs g = op.g;
    if (g.layout != Layout::RowMajor) throw_expected(ErrorKind::Range, "'row' layout", "layout", "'col'");
    check_sgemm(g, op.A.length, op.B.length, op.C.length);
    const size_t i = op.next;
    auto BS = a.array<double>(i, "bsum"), BA = a.array<double>(i + 1, "babs");
    auto E = a.array<double>(i + 2, "expected"), M = a.array<double>(i + 3, "magnitude"), R = a.array<double>(i + 4, "actual");
    check_min_length(BS, g.k);
    check_min_length(BA, g.k);
    check_min_length(E, g.m);
    check_min_length(M, g.m);
    check_min_length(R, g.m);
    check_no_overlap(E, M);
    check_no_overlap(E, R);
    check_no_overlap(M, R);
    const double *bs = BS.data, *ba = BA.data;
    double *e = E.data, *mg = M.data, *r = R.data;
    return Job{[=] { sgemm_row_checked(g, bs, ba, e, mg, r); }, R.value,
               {op.A.value, op.B.value, op.C.value, BS.value, BA.value, E.value, M.value, R.value}};
  });
}

// Test-only: _setFaultInjection(row, col, bit) arms a one-shot accumulator bit flip in the next
// sgemmChecked; _setFaultInjection(null) disarms it. Returns whether the previous checked call fired.
Napi::Value SetFaultInjection(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const bool fired = abft_fault_fired();
    if (info.Length() == 0 || info[0].IsNull() || info[0].IsUndefined()) {
      clear_abft_fault();
    } else {
      Args a(info);
      int64_t row = a.integer(0, "row", 0, kMaxDim), col = a.integer(1, "col", 0, kMaxDim);
      int bit = int(a.integer(2, "bit", 0, 31));
      set_abft_fault(row, col, bit);
    }
    return Napi::Boolean::New(info.Env(), fired);
  });
}

// ---- convolution ----
// The arguments both forward calls share: (params, x, weights, bias|null, y), with `weights` of
// `weight_floats` (plain or packed) and every length and overlap checked.
struct ConvForwardArgs {
  Conv2dParams p;
  Array<float> x, weights, bias, y;
};

ConvForwardArgs read_conv_forward(const Args& a, const char* weights_name, int64_t (*weight_floats)(const Conv2dParams&)) {
  ConvForwardArgs c{read_conv_params(a, 0), a.array<float>(1, "x"), a.array<float>(2, weights_name), a.array<float>(3, "bias", true), a.array<float>(4, "y")};
  check_min_length(c.x, c.p.input_size());
  check_min_length(c.weights, weight_floats(c.p));
  if (c.bias.present()) check_min_length(c.bias, c.p.c_out);
  check_min_length(c.y, c.p.output_size());
  check_no_overlap(c.y, c.x);
  check_no_overlap(c.y, c.weights);
  check_no_overlap(c.y, c.bias);
  return c;
}

// conv2dForward(async, params, x, w, bias|null, y)
Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    ConvForwardArgs c = read_conv_forward(a, "w", [](const Conv2dParams& p) { return p.weight_size(); });
    const Conv2dParams p = c.p;
    const float *x = c.x.data, *w = c.weights.data, *bias = c.bias.data;
    float* y = c.y.data;
    return Job{[p, x, w, bias, y] { conv2d_forward(p, x, w, bias, y); }, c.y.value, {c.x.value, c.weights.value, c.y.value, a.value(3)}};
  });
}

// conv2dPackedSize(params) -> floats of a packed weight buffer for these weights
Napi::Value Conv2dPackedSize(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Args a(info);
    Conv2dParams p = read_conv_params(a, 0);
    return Napi::Number::New(info.Env(), double(conv2d_packed_weights_size(p)));
  });
}

// conv2dPackWeights(async, params, w, packed)
Napi::Value Conv2dPackWeights(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    Conv2dParams p = read_conv_params(a, 0);
    auto W = a.array<float>(1, "w"), P = a.array<float>(2, "packed");
    check_min_length(W, p.weight_size());
    check_min_length(P, conv2d_packed_weights_size(p));
    check_no_overlap(P, W);
    const float* w = W.data;
    float* packed = P.data;
    return Job{[p, w, packed] { conv2d_pack_weights(p, w, packed); }, P.value, {W.value, P.value}};
  });
}

// conv2dForwardPacked(async, params, x, packed, bias|null, y)
Napi::Value Conv2dForwardPacked(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    ConvForwardArgs c = read_conv_forward(a, "packed", [](const Conv2dParams& p) { return int64_t(conv2d_packed_weights_size(p)); });
    const Conv2dParams p = c.p;
    const float *x = c.x.data, *packed = c.weights.data, *bias = c.bias.data;
    float* y = c.y.data;
    return Job{[p, x, packed, bias, y] { conv2d_forward_packed(p, x, packed, bias, y); }, c.y.value,
               {c.x.value, c.weights.value, c.y.value, a.value(3)}};
  });
}

// conv2dBackwardData(async, params, dy, w, dx)
Napi::Value Conv2dBackwardData(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    Conv2dParams p = read_conv_params(a, 0);
    auto DY = a.array<float>(1, "dy"), W = a.array<float>(2, "w"), DX = a.array<float>(3, "dx");
    check_min_length(DY, p.output_size());
    check_min_length(W, p.weight_size());
    check_min_length(DX, p.input_size());
    check_no_overlap(DX, DY);
    check_no_overlap(DX, W);
    const float *dy = DY.data, *w = W.data;
    float* dx = DX.data;
    return Job{[p, dy, w, dx] { conv2d_backward_data(p, dy, w, dx); }, DX.value, {DY.value, W.value, DX.value}};
  });
}

// conv2dBackwardWeight(async, params, x, dy, dw, db|null)
Napi::Value Conv2dBackwardWeight(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    Conv2dParams p = read_conv_params(a, 0);
    auto X = a.array<float>(1, "x"), DY = a.array<float>(2, "dy"), DW = a.array<float>(3, "dw"), DB = a.array<float>(4, "db", true);
    check_min_length(X, p.input_size());
    check_min_length(DY, p.output_size());
    check_min_length(DW, p.weight_size());
    if (DB.present()) check_min_length(DB, p.c_out);
    for (auto* out : {&DW}) {
      check_no_overlap(*out, X);
      check_no_overlap(*out, DY);
    }
    check_no_overlap(DB, X);
    check_no_overlap(DB, DY);
    check_no_overlap(DB, DW);
    const float *x = X.data, *dy = DY.data;
    float *dw = DW.data, *db = DB.data;
    return Job{[p, x, dy, dw, db] { conv2d_backward_weight(p, x, dy, dw, db); }, DW.value, {X.value, DY.value, DW.value, a.value(4)}};
  });
}

// ---- checksums ----
// checksum(async, kind, a, m, n, ld, weights|null, out) with a Float32Array or Float64Array `a`.
template <typename T>
Job checksum_job(const Args& a, const std::string& kind, int64_t m, int64_t n, int64_t ld, const Array<double>& out) {
  auto A = a.array<T>(1, "a");
  bool weighted = kind == "weightedRow" || kind == "weightedCol";
  auto Wt = a.array<T>(5, "weights", !weighted);
  if (!weighted && Wt.present()) throw_expected(ErrorKind::Type, "null", "weights", "weights for an unweighted checksum");
  int64_t min_ld = std::max<int64_t>(1, n);
  if (ld < min_ld) throw_expected(ErrorKind::Range, "a leading dimension >= " + std::to_string(min_ld), "ld", std::to_string(ld));
  check_min_length(A, m == 0 || n == 0 ? 0 : (m - 1) * ld + n);
  bool rows = kind == "row" || kind == "weightedRow";
  check_min_length(out, rows ? m : n);
  if (weighted) check_min_length(Wt, kind == "weightedRow" ? n : m);
  check_no_overlap(out, A);
  const T *x = A.data, *w = Wt.data;
  double* o = out.data;
  std::function<void()> work;
  if (kind == "row") work = [=] { row_sums<T>(x, m, n, ld, o); };
  else if (kind == "col") work = [=] { col_sums<T>(x, m, n, ld, o); };
  else if (kind == "weightedRow") work = [=] { weighted_row_sums<T>(x, m, n, ld, w, o); };
  else work = [=] { weighted_col_sums<T>(x, m, n, ld, w, o); };
  return Job{work, out.value, {A.value, out.value, a.value(5)}};
}

Napi::Value Checksum(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    std::string kind = a.choice(0, "kind", {"row", "col", "weightedRow", "weightedCol"});
    int64_t m = a.integer(2, "m", 0, kMaxDim), n = a.integer(3, "n", 0, kMaxDim), ld = a.integer(4, "ld", 1, kMaxDim);
    auto out = a.array<double>(6, "out");
    Napi::Value v = a.value(1);
    if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array)
      return checksum_job<double>(a, kind, m, n, ld, out);
    return checksum_job<float>(a, kind, m, n, ld, out);
  });
}

// ---- parity coding ----
// Pointers to the blocks' data for a kernel: the blocks are kept alive by `job` and may not share
// memory with `out` (the check is skipped when `out` is absent).
template <typename T, typename O>
std::vector<T*> block_pointers(const std::vector<Array<T>>& blocks, const Array<O>& out, Job& job) {
  std::vector<T*> ptrs;
  for (auto& b : blocks) {
    check_no_overlap(out, b);
    ptrs.push_back(b.data);
    job.keep_alive.push_back(b.value);
  }
  return ptrs;
}

// xorEncode(async, blocks: Uint8Array[], parity)
Napi::Value XorEncode(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto blocks = a.array_list<uint8_t>(0, "blocks", 1);
    auto P = a.array<uint8_t>(1, "parity");
    if (P.length != blocks[0].length)
      throw_expected(ErrorKind::Range, std::to_string(blocks[0].length) + " bytes (the block length)", "parity", std::to_string(P.length) + " bytes");
    Job job;
    std::vector<uint8_t*> ptrs = block_pointers(blocks, P, job);
    uint8_t* p = P.data;
    size_t len = size_t(P.length);
    job.work = [ptrs, p, len] { xor_encode(ptrs.data(), int(ptrs.size()), len, p); };
    job.result = P.value;
    job.keep_alive.push_back(P.value);
    return job;
  });
}

// xorInto(async, dst, src)
Napi::Value XorInto(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto D = a.array<uint8_t>(0, "dst"), S = a.array<uint8_t>(1, "src");
    if (D.length != S.length) throw_expected(ErrorKind::Range, std::to_string(D.length) + " bytes (as dst)", "src", std::to_string(S.length) + " bytes");
    check_no_overlap(D, S);
    uint8_t* d = D.data;
    const uint8_t* s = S.data;
    size_t len = size_t(D.length);
    return Job{[d, s, len] { xor_into(d, s, len); }, D.value, {D.value, S.value}};
  });
}

// sumEncode(async, blocks: Float32Array[], coeffs|null, parity)
Napi::Value SumEncode(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto blocks = a.array_list<float>(0, "blocks", 1);
    auto coeffs = a.array<float>(1, "coeffs", true);
    auto P = a.array<float>(2, "parity");
    if (coeffs.present() && coeffs.length != int64_t(blocks.size()))
      throw_expected(ErrorKind::Range, std::to_string(blocks.size()) + " coefficients (one per block)", "coeffs", std::to_string(coeffs.length));
    if (P.length != blocks[0].length)
      throw_expected(ErrorKind::Range, std::to_string(blocks[0].length) + " elements (the block length)", "parity", std::to_string(P.length));
    Job job;
    std::vector<float*> ptrs = block_pointers(blocks, P, job);
    std::vector<float> c(coeffs.present() ? coeffs.data : nullptr, coeffs.present() ? coeffs.data + coeffs.length : nullptr);
    float* p = P.data;
    size_t len = size_t(P.length);
    job.work = [ptrs, c, p, len] { sum_encode(ptrs.data(), c.empty() ? nullptr : c.data(), int(ptrs.size()), len, p); };
    job.result = P.value;
    job.keep_alive.push_back(P.value);
    return job;
  });
}

// sumDecode(async, parity, available: Float32Array[], coeffs, missingCoeff, out)
Napi::Value SumDecode(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto P = a.array<float>(0, "parity");
    auto blocks = a.array_list<float>(1, "available", 0);
    auto coeffs = a.array<float>(2, "coeffs");
    double missing = a.number(3, "missingCoeff");
    if (missing == 0.0) throw_expected(ErrorKind::Range, "a non-zero coefficient", "missingCoeff", "0");
    auto O = a.array<float>(4, "out");
    if (coeffs.length != int64_t(blocks.size()))
      throw_expected(ErrorKind::Range, std::to_string(blocks.size()) + " coefficients (one per available block)", "coeffs", std::to_string(coeffs.length));
    if (O.length != P.length) throw_expected(ErrorKind::Range, std::to_string(P.length) + " elements (as parity)", "out", std::to_string(O.length));
    if (!blocks.empty() && blocks[0].length != P.length)
      throw_expected(ErrorKind::Range, std::to_string(P.length) + " elements (as parity)", blocks[0].name, std::to_string(blocks[0].length));
    Job job;
    std::vector<float*> ptrs = block_pointers(blocks, O, job);
    check_no_overlap(O, P);
    std::vector<float> c(coeffs.data, coeffs.data + coeffs.length);
    const float* p = P.data;
    float* o = O.data;
    float mc = float(missing);
    size_t len = size_t(P.length);
    job.work = [p, ptrs, c, mc, o, len] { sum_decode(p, ptrs.data(), c.data(), int(ptrs.size()), mc, len, o); };
    job.result = O.value;
    job.keep_alive.insert(job.keep_alive.end(), {P.value, O.value});
    return job;
  });
}

// ---- Reed-Solomon over GF(2^8) ----
// Reads k and r (validated by the ReedSolomon constructor, which throws Range errors).
ReedSolomon read_code(const Args& a, size_t i) {
  int k = int(a.integer(i, "k", 1, 254)), r = int(a.integer(i + 1, "r", 1, 4));
  return ReedSolomon(k, r);
}

// Checks that every block in `list` has `len` bytes and that no output overlaps another block.
void check_blocks(const std::vector<Array<uint8_t>>& outputs, const std::vector<Array<uint8_t>>& all) {
  for (auto& out : outputs)
    for (auto& other : all)
      if (&out != &other && out.data != other.data) check_no_overlap(out, other);
}

// rsEncode(async, k, r, data: Uint8Array[k], parity: Uint8Array[r])
Napi::Value RsEncode(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto code = std::make_shared<ReedSolomon>(read_code(a, 0));
    auto data = a.array_list<uint8_t>(2, "data", 1);
    auto parity = a.array_list<uint8_t>(3, "parity", 1);
    if (int(data.size()) != code->k()) throw_expected(ErrorKind::Range, std::to_string(code->k()) + " data blocks", "data", std::to_string(data.size()) + " blocks");
    if (int(parity.size()) != code->r()) throw_expected(ErrorKind::Range, std::to_string(code->r()) + " parity blocks", "parity", std::to_string(parity.size()) + " blocks");
    if (parity[0].length != data[0].length)
      throw_expected(ErrorKind::Range, std::to_string(data[0].length) + " bytes (the data block length)", "parity[0]", std::to_string(parity[0].length) + " bytes");
    std::vector<Array<uint8_t>> all(data);
    all.insert(all.end(), parity.begin(), parity.end());
    check_blocks(parity, all);
    Job job;
    std::vector<uint8_t*> in = block_pointers(data, Array<uint8_t>(), job), out = block_pointers(parity, Array<uint8_t>(), job);
    size_t len = size_t(data[0].length);
    job.work = [code, in, out, len] { code->encode(in.data(), len, out.data()); };
    return job;
  });
}

// rsDecode(async, k, r, blocks: Uint8Array[k + r], present: boolean[k + r]); rebuilds missing blocks in place.
Napi::Value RsDecode(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto code = std::make_shared<ReedSolomon>(read_code(a, 0));
    auto blocks = a.array_list<uint8_t>(2, "blocks", 1);
    size_t n = size_t(code->k() + code->r());
    if (blocks.size() != n) throw_expected(ErrorKind::Range, std::to_string(n) + " blocks (k + r)", "blocks", std::to_string(blocks.size()) + " blocks");
    Napi::Value pv = a.value(3);
    if (!pv.IsArray()) throw_expected(ErrorKind::Type, "an array of booleans", "present", describe(pv));
    auto list = pv.As<Napi::Array>();
    if (list.Length() != n) throw_expected(ErrorKind::Range, std::to_string(n) + " flags (k + r)", "present", std::to_string(list.Length()) + " flags");
    auto present = std::shared_ptr<bool[]>(new bool[n]);
    std::vector<Array<uint8_t>> missing;
    for (uint32_t i = 0; i < n; ++i) {
      Napi::Value f = list.Get(i);
      if (!f.IsBoolean()) throw_expected(ErrorKind::Type, "a boolean", "present[" + std::to_string(i) + "]", describe(f));
      present[i] = f.As<Napi::Boolean>().Value();
      if (!present[i]) missing.push_back(blocks[i]);
    }
    if (int(missing.size()) > code->r())
      throw_expected(ErrorKind::Range, "at most " + std::to_string(code->r()) + " missing blocks", "present", std::to_string(missing.size()) + " missing");
    check_blocks(missing, blocks);
    Job job;
    std::vector<uint8_t*> ptrs = block_pointers(blocks, Array<uint8_t>(), job);
    size_t len = size_t(blocks[0].length);
    job.work = [code, ptrs, present, len] { code->decode(ptrs.data(), present.get(), len); };
    return job;
  });
}

// rsUpdateParity(async, k, r, dataIndex, delta, parity: Uint8Array[r]); parity ^= P[:, dataIndex] * delta.
Napi::Value RsUpdateParity(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto code = std::make_shared<ReedSolomon>(read_code(a, 0));
    int index = int(a.integer(2, "dataIndex", 0, code->k() - 1));
    auto delta = a.array<uint8_t>(3, "delta");
    auto parity = a.array_list<uint8_t>(4, "parity", 1);
    if (int(parity.size()) != code->r()) throw_expected(ErrorKind::Range, std::to_string(code->r()) + " parity blocks", "parity", std::to_string(parity.size()) + " blocks");
    if (parity[0].length != delta.length)
      throw_expected(ErrorKind::Range, std::to_string(delta.length) + " bytes (the delta length)", "parity[0]", std::to_string(parity[0].length) + " bytes");
    std::vector<Array<uint8_t>> all(parity);
    all.push_back(delta);
    check_blocks(parity, all);
    Job job{nullptr, Napi::Value(), {delta.value}};
    std::vector<uint8_t*> out = block_pointers(parity, Array<uint8_t>(), job);
    const uint8_t* d = delta.data;
    size_t len = size_t(delta.length);
    job.work = [code, index, d, len, out] { code->update_parity(index, d, len, out.data()); };
    return job;
  });
}

// ---- embedding bags ----
// Reads (rows, dim, indices, offsets, weights|null, mode) starting at argument `i` and checks them.
struct BagInputs {
  EmbeddingBagArgs args;
  Napi::Value indices, offsets, weights;
};

BagInputs read_bag(const Args& a, size_t i) {
  BagInputs in;
  EmbeddingBagArgs& e = in.args;
  e.rows = a.integer(i, "rows", 1, kMaxDim);
  e.dim = a.integer(i + 1, "dim", 1, kMaxDim);
  if (double(e.rows) * double(e.dim) > 9.0e15) throw_expected(ErrorKind::Range, "a table below 2^53 elements", "rows x dim", "larger");
  auto I = a.array<int32_t>(i + 2, "indices"), O = a.array<int32_t>(i + 3, "offsets");
  auto W = a.array<float>(i + 4, "weights", true);
  e.mode = a.choice(i + 5, "mode", {"sum", "mean"}) == "sum" ? BagMode::Sum : BagMode::Mean;
  if (O.length < 1) throw_expected(ErrorKind::Range, "at least 1 offset (bags + 1)", "offsets", "0 offsets");
  e.indices = I.data;
  e.nnz = I.length;
  e.offsets = O.data;
  e.bags = O.length - 1;
  if (W.present() && W.length != I.length)
    throw_expected(ErrorKind::Range, std::to_string(I.length) + " weights (one per index)", "weights", std::to_string(W.length));
  e.weights = W.data;
  check_embedding_bag(e);
  in.indices = I.value;
  in.offsets = O.value;
  in.weights = a.value(i + 4);
  return in;
}

// embeddingBagForward(async, table, rows, dim, indices, offsets, weights|null, mode, out)
Napi::Value EmbeddingBagForward(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto T = a.array<float>(0, "table");
    BagInputs in = read_bag(a, 1);
    auto O = a.array<float>(7, "out");
    check_min_length(T, in.args.rows * in.args.dim);
    check_min_length(O, in.args.bags * in.args.dim);
    check_no_overlap(O, T);
    EmbeddingBagArgs e = in.args;
    const float* t = T.data;
    float* o = O.data;
    return Job{[e, t, o] { embedding_bag_forward(e, t, o); }, O.value, {T.value, in.indices, in.offsets, in.weights, O.value}};
  });
}

// embeddingBagBackward(async, gradOut, rows, dim, indices, offsets, weights|null, mode, scale, gradTable)
Napi::Value EmbeddingBagBackward(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto G = a.array<float>(0, "gradOut");
    BagInputs in = read_bag(a, 1);
    float scale = float(a.number(7, "scale"));
    auto T = a.array<float>(8, "gradTable");
    check_min_length(G, in.args.bags * in.args.dim);
    check_min_length(T, in.args.rows * in.args.dim);
    check_no_overlap(T, G);
    EmbeddingBagArgs e = in.args;
    const float* g = G.data;
    float* t = T.data;
    return Job{[e, g, scale, t] { embedding_bag_backward(e, g, scale, t); }, T.value, {G.value, in.indices, in.offsets, in.weights, T.value}};
  });
}

// ---- pairwise dots (DLRM's interaction) ----
// pairwiseDotsForward(async, z, n, vectors, dim, self, out)
Napi::Value PairwiseDotsForward(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto Z = a.array<float>(0, "z");
    PairwiseDotsArgs d = read_pairwise_dots(a, 1);
    auto O = a.array<float>(5, "out");
    check_min_length(Z, d.n * d.vectors * d.dim);
    check_min_length(O, d.n * d.pairs());
    check_no_overlap(O, Z);
    const float* z = Z.data;
    float* o = O.data;
    return Job{[d, z, o] { pairwise_dots_forward(d, z, o); }, O.value, {Z.value, O.value}};
  });
}

// pairwiseDotsBackward(async, z, gradOut, n, vectors, dim, self, gradZ)
Napi::Value PairwiseDotsBackward(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto Z = a.array<float>(0, "z");
    auto G = a.array<float>(1, "gradOut");
    PairwiseDotsArgs d = read_pairwise_dots(a, 2);
    auto O = a.array<float>(6, "gradZ");
    check_min_length(Z, d.n * d.vectors * d.dim);
    check_min_length(G, d.n * d.pairs());
    check_min_length(O, d.n * d.vectors * d.dim);
    check_no_overlap(O, Z);
    check_no_overlap(O, G);
    const float* z = Z.data;
    const float* g = G.data;
    float* o = O.data;
    return Job{[d, z, g, o] { pairwise_dots_backward(d, z, g, o); }, O.value, {Z.value, G.value, O.value}};
  });
}

// reluForward(async, x, y): y = max(x, +0) elementwise.
Napi::Value ReluForward(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto X = a.array<float>(0, "x"), Y = a.array<float>(1, "y");
    check_min_length(Y, X.length);
    check_no_overlap(Y, X);
    const float* x = X.data;
    float* y = Y.data;
    const int64_t n = X.length;
    return Job{[x, n, y] { relu_forward(x, n, y); }, Y.value, {X.value, Y.value}};
  });
}

// reluBackward(async, dy, y, dx): dx = dy * (y > 0) + 0.
Napi::Value ReluBackward(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto DY = a.array<float>(0, "dy"), Y = a.array<float>(1, "y"), DX = a.array<float>(2, "dx");
    check_min_length(Y, DY.length);
    check_min_length(DX, DY.length);
    check_no_overlap(DX, DY);
    check_no_overlap(DX, Y);
    const float *dy = DY.data, *y = Y.data;
    float* dx = DX.data;
    const int64_t n = DY.length;
    return Job{[dy, y, n, dx] { relu_backward(dy, y, n, dx); }, DX.value, {DY.value, Y.value, DX.value}};
  });
}

// addInto(async, a, b): a += b (a and b of the same length; b must not overlap a).
Napi::Value AddInto(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args args(info, 1);
    auto A = args.array<float>(0, "a"), B = args.array<float>(1, "b");
    if (A.length != B.length) throw_expected(ErrorKind::Range, std::to_string(A.length) + " elements (as a)", "b", std::to_string(B.length));
    check_no_overlap(A, B);
    float* a = A.data;
    const float* b = B.data;
    const int64_t n = A.length;
    return Job{[a, b, n] { add_into(a, b, n); }, A.value, {A.value, B.value}};
  });
}

// adagradUpdate(async, w, g, s, lr, eps, weightDecay): one element-wise Adagrad step in place on w
// and s (see adagrad_update); the three arrays have one length and do not overlap.
Napi::Value AdagradUpdate(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto W = a.array<float>(0, "weights"), G = a.array<float>(1, "grads"), S = a.array<float>(2, "state");
    if (G.length != W.length) throw_expected(ErrorKind::Range, std::to_string(W.length) + " elements (as weights)", "grads", std::to_string(G.length));
    if (S.length != W.length) throw_expected(ErrorKind::Range, std::to_string(W.length) + " elements (as weights)", "state", std::to_string(S.length));
    check_no_overlap(W, G);
    check_no_overlap(W, S);
    check_no_overlap(S, G);
    const double lr = a.number(3, "lr"), eps = a.number(4, "eps"), wd = a.number(5, "weightDecay");
    float *w = W.data, *s = S.data;
    const float* g = G.data;
    const int64_t n = W.length;
    return Job{[w, g, s, n, lr, eps, wd] { adagrad_update(w, g, s, n, lr, eps, wd); }, W.value, {W.value, G.value, S.value}};
  });
}

// Reads (n, c, hw, eps, momentum, training) starting at argument `i` and checks them.
BatchNormArgs read_batch_norm(const Args& a, size_t i) {
  BatchNormArgs b;
  b.n = a.integer(i, "n", 0, kMaxDim);
  b.c = a.integer(i + 1, "c", 1, kMaxDim);
  b.hw = a.integer(i + 2, "hw", 0, kMaxDim);
  if (double(b.n) * double(b.c) * double(b.hw) > 9.0e15) throw_expected(ErrorKind::Range, "a tensor below 2^53 elements", "n x c x hw", "larger");
  b.eps = a.number(i + 3, "eps");
  b.momentum = a.number(i + 4, "momentum");
  b.training = a.boolean(i + 5, "training");
  check_batch_norm(b);
  return b;
}

// batchNormForward(async, x, n, c, hw, eps, momentum, training, gamma, beta, runningMean, runningVar, xhat, y, invStd)
Napi::Value BatchNormForward(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto X = a.array<float>(0, "x");
    BatchNormArgs b = read_batch_norm(a, 1);
    auto G = a.array<float>(7, "gamma"), B = a.array<float>(8, "beta"), RM = a.array<float>(9, "runningMean"), RV = a.array<float>(10, "runningVar");
    auto XH = a.array<float>(11, "xhat"), Y = a.array<float>(12, "y");
    auto IS = a.array<double>(13, "invStd");
    const int64_t size = b.n * b.c * b.hw;
    check_min_length(X, size);
    for (auto* p : {&G, &B, &RM, &RV}) check_min_length(*p, b.c);
    check_min_length(XH, size);
    check_min_length(Y, size);
    check_min_length(IS, b.c);
    check_no_overlap(XH, X);
    check_no_overlap(Y, X);
    check_no_overlap(Y, XH);
    check_no_overlap(RM, RV);
    const float *x = X.data, *g = G.data, *bt = B.data;
    float *rm = RM.data, *rv = RV.data, *xh = XH.data, *y = Y.data;
    double* is = IS.data;
    return Job{[b, x, g, bt, rm, rv, xh, y, is] { batch_norm_forward(b, x, g, bt, rm, rv, xh, y, is); }, Y.value,
               {X.value, G.value, B.value, RM.value, RV.value, XH.value, Y.value, IS.value}};
  });
}

// batchNormBackward(async, dy, n, c, hw, eps, momentum, training, xhat, gamma, invStd, dgamma, dbeta, dx)
Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    auto DY = a.array<float>(0, "dy");
    BatchNormArgs b = read_batch_norm(a, 1);
    auto XH = a.array<float>(7, "xhat"), G = a.array<float>(8, "gamma");
    auto IS = a.array<double>(9, "invStd");
    auto DG = a.array<float>(10, "dgamma"), DB = a.array<float>(11, "dbeta"), DX = a.array<float>(12, "dx");
    const int64_t size = b.n * b.c * b.hw;
    check_min_length(DY, size);
    check_min_length(XH, size);
    check_min_length(DX, size);
    for (auto* p : {&G, &DG, &DB}) check_min_length(*p, b.c);
    check_min_length(IS, b.c);
    check_no_overlap(DX, DY);
    check_no_overlap(DX, XH);
    check_no_overlap(DG, DB);
    const float *dy = DY.data, *xh = XH.data, *g = G.data;
    const double* is = IS.data;
    float *dg = DG.data, *db = DB.data, *dx = DX.data;
    return Job{[b, dy, xh, g, is, dg, db, dx] { batch_norm_backward(b, dy, xh, g, is, dg, db, dx); }, DX.value,
               {DY.value, XH.value, G.value, IS.value, DG.value, DB.value, DX.value}};
  });
}

// What every row move starts with (arguments 0..2): the table, its row width and the row indices,
// copied (they are checked once, and JS may change its array while a job runs).
struct RowMove {
  Array<int32_t> table;
  int64_t width = 0, table_rows = 0;
  std::vector<int32_t> rows;
  RowSet set() const { return {table_rows, width, rows.data(), int64_t(rows.size())}; }
};

RowMove read_row_move(const Args& a) {
  RowMove m;
  m.table = a.array<int32_t>(0, "table");
  m.width = a.integer(1, "width", 1, INT32_MAX);
  auto R = a.array<int32_t>(2, "rows");
  m.rows.assign(R.data, R.data + R.length);
  if (m.table.length % m.width != 0)
    throw_expected(ErrorKind::Range, "a whole number of " + std::to_string(m.width) + "-word rows", "table", std::to_string(m.table.length) + " words");
  m.table_rows = m.table.length / m.width;
  return m;
}

// gatherRows(async, table: Int32Array, width, rows: Int32Array, col, cols, out: Int32Array)
Napi::Value GatherRows(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    RowMove m = read_row_move(a);
    int64_t col = a.integer(3, "col", 0, m.width), cols = a.integer(4, "cols", 0, m.width - col);
    auto O = a.array<int32_t>(5, "out");
    check_min_length(O, int64_t(m.rows.size()) * cols);
    check_no_overlap(O, m.table);
    auto t = reinterpret_cast<const uint32_t*>(m.table.data);
    auto o = reinterpret_cast<uint32_t*>(O.data);
    Napi::Value table = m.table.value;
    return Job{[m = std::move(m), t, col, cols, o] { gather_rows(m.set(), t, col, cols, o); }, O.value, {table, O.value}};
  });
}

// scatterRows(async, table: Int32Array, width, rows: Int32Array, src: Int32Array, xor: boolean,
//             present: Uint8Array | null, counts: Uint8Array | null)
Napi::Value ScatterRows(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    RowMove m = read_row_move(a);
    auto S = a.array<int32_t>(3, "src");
    bool xor_into = a.boolean(4, "xor");
    check_min_length(S, int64_t(m.rows.size()) * m.width);
    check_no_overlap(m.table, S);
    uint8_t* present = nullptr;
    std::vector<Napi::Value> keep{m.table.value, S.value};
    auto P = a.array<uint8_t>(5, "present", /*nullable=*/true);
    if (P.present()) {
      if (P.length != m.table_rows)
        throw_expected(ErrorKind::Range, "a present mask of " + std::to_string(m.table_rows) + " bytes (one per table row)", "present", std::to_string(P.length) + " bytes");
      present = P.data;
      keep.push_back(P.value);
    }
    uint8_t* counts = nullptr;
    auto C = a.array<uint8_t>(6, "counts", /*nullable=*/true);
    if (C.present()) {
      if (C.length != m.table_rows)
        throw_expected(ErrorKind::Range, "counts of " + std::to_string(m.table_rows) + " bytes (one per table row)", "counts", std::to_string(C.length) + " bytes");
      check_no_overlap(C, P);
      check_no_overlap(C, m.table);
      check_no_overlap(C, S);
      counts = C.data;
      keep.push_back(C.value);
    }
    auto s = reinterpret_cast<const uint32_t*>(S.data);
    auto t = reinterpret_cast<uint32_t*>(m.table.data);
    Napi::Value table = m.table.value;
    return Job{[m = std::move(m), s, xor_into, t, present, counts] { scatter_rows(m.set(), s, xor_into, t, present, counts); }, table, std::move(keep)};
  });
}

// largePages(bytes) -> zeroed ArrayBuffer backed by transparent huge pages where the kernel offers
// them (Linux, THP "always" or "madvise"). Tables read at random rows (embedding rows, parity)
// then miss the TLB far less, and fault in and tear down in 2 MB rather than 4 KB steps.
Napi::Value LargePages(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const int64_t bytes = Args(info).integer(0, "bytes", 1, int64_t(1) << 40);
#ifdef __linux__
    constexpr size_t kHuge = size_t(2) << 20;
    const size_t len = (size_t(bytes) + kHuge - 1) & ~(kHuge - 1);
    // Over-map by one huge page and trim, so the region starts on a huge-page boundary.
    void* raw = mmap(nullptr, len + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) throw Error(ErrorKind::OutOfMemory, "largePages: mmap of " + std::to_string(len) + " bytes failed");
    const uintptr_t start = (reinterpret_cast<uintptr_t>(raw) + kHuge - 1) & ~uintptr_t(kHuge - 1);
    const size_t head = start - reinterpret_cast<uintptr_t>(raw);
    if (head) munmap(raw, head);
    if (kHuge - head) munmap(reinterpret_cast<void*>(start + len), kHuge - head);
    void* p = reinterpret_cast<void*>(start);
    madvise(p, len, MADV_HUGEPAGE);  // advice only: without THP the pages are ordinary ones
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), int64_t(len));
    return Napi::ArrayBuffer::New(info.Env(), p, size_t(bytes), [](Napi::Env env, void* data, size_t* mapped) {
      munmap(data, *mapped);
      Napi::MemoryManagement::AdjustExternalMemory(env, -int64_t(*mapped));
      delete mapped;
    }, new size_t(len));
#else
    return Napi::ArrayBuffer::New(info.Env(), size_t(bytes));
#endif
  });
}

// adviseHugePages(view): asks for transparent huge pages under the whole 2 MB pages inside a typed
// array's memory (a SharedArrayBuffer's, which the allocator maps; largePages maps its own).
// Advice before the first touch takes effect as the pages fault in; without THP it does nothing.
Napi::Value AdviseHugePages(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Napi::Value v = info[0];
    if (!v.IsTypedArray()) throw_expected(ErrorKind::Type, "a typed array", "view", describe(v));
    void* data = nullptr;
    size_t length = 0, offset = 0;
    napi_typedarray_type type;
    napi_value buffer;
    NAPI_THROW_IF_FAILED(info.Env(), napi_get_typedarray_info(info.Env(), v, &type, &length, &data, &buffer, &offset), Napi::Value());
    const size_t bytes = v.As<Napi::TypedArray>().ByteLength();
    bool advised = false;
#ifdef __linux__
    constexpr uintptr_t kHuge = uintptr_t(2) << 20;
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
    const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
    if (data && end > begin) advised = madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE) == 0;
#endif
    return Napi::Boolean::New(info.Env(), advised);
  });
}

// Test-only: raise each kind of native error so the JS error mapping can be checked.
Napi::Value ThrowNativeError(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    std::string kind = Args(info).choice(0, "kind", {"type", "range", "unsupported", "device", "oom", "internal"});
    ErrorKind k = kind == "type" ? ErrorKind::Type : kind == "range" ? ErrorKind::Range : kind == "unsupported" ? ErrorKind::Unsupported
                  : kind == "device" ? ErrorKind::Device : kind == "oom" ? ErrorKind::OutOfMemory : ErrorKind::Internal;
    throw Error(k, "test error of kind " + kind);
  });
}

class KintsugiAddon : public Napi::Addon<KintsugiAddon> {
 public:
  KintsugiAddon(Napi::Env env, Napi::Object exports) {
    malloc_tuning();  // once per process, before the first output is allocated
    packed_ctor_ = Napi::Persistent(PackedMatrixHandle::Define(env));
    exports.Set("PackedMatrix", packed_ctor_.Value());
    register_cuda(env, exports);
    struct Entry { const char* name; Napi::Function::Callback fn; };
    const Entry entries[] = {
        {"devices", Devices}, {"cudaStatus", CudaStatus}, {"cpuInfo", CpuInfoValue}, {"mallocTuning", MallocTuningValue},
        {"numThreads", GetNumThreads}, {"setNumThreads", SetNumThreads}, {"setThreadBackground", SetThreadBackground}, {"spinMicros", GetSpinMicros}, {"setSpinMicros", SetSpinMicros}, {"setIsaLimit", SetIsaLimit},
        {"sgemm", Sgemm}, {"packB", PackB}, {"sgemmPacked", SgemmPacked},
        {"conv2dForward", Conv2dForward}, {"conv2dPackedSize", Conv2dPackedSize}, {"conv2dPackWeights", Conv2dPackWeights}, {"conv2dForwardPacked", Conv2dForwardPacked},
        {"conv2dBackwardData", Conv2dBackwardData}, {"conv2dBackwardWeight", Conv2dBackwardWeight},
        {"checksum", Checksum}, {"xorEncode", XorEncode}, {"xorInto", XorInto}, {"sumEncode", SumEncode}, {"sumDecode", SumDecode},
        {"rsEncode", RsEncode}, {"rsDecode", RsDecode}, {"rsUpdateParity", RsUpdateParity},
        {"reluForward", ReluForward}, {"reluBackward", ReluBackward}, {"addInto", AddInto}, {"adagradUpdate", AdagradUpdate}, {"batchNormForward", BatchNormForward}, {"batchNormBackward", BatchNormBackward}, {"embeddingBagForward", EmbeddingBagForward}, {"embeddingBagBackward", EmbeddingBagBackward}, {"pairwiseDotsForward", PairwiseDotsForward}, {"pairwiseDotsBackward", PairwiseDotsBackward}, {"gatherRows", GatherRows}, {"scatterRows", ScatterRows}, {"largePages", LargePages}, {"adviseHugePages", AdviseHugePages},
        {"sgemmChecked", SgemmChecked}, {"abftGroupWidth", AbftGroupWidth}, {"abftGroupSums", AbftGroupSums}, {"abftRowCheck", AbftRowCheck}, {"sgemmRowChecked", SgemmRowChecked},
        {"_throwNativeError", ThrowNativeError}, {"_setFaultInjection", SetFaultInjection},
    };
    for (const Entry& e : entries) exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
    exports.Set("version", Napi::String::New(env, "0.1.0"));
    exports.Set("cudaCompiled", Napi::Boolean::New(env, cuda::compiled()));
    register_nvml(env, exports);
  }
  Napi::FunctionReference packed_ctor_;
};

Napi::FunctionReference& packed_ctor(Napi::Env env) { return env.GetInstanceData<KintsugiAddon>()->packed_ctor_; }

}  // namespace
}  // namespace kintsugi::binding

using kintsugi::binding::KintsugiAddon;
NODE_API_ADDON(KintsugiAddon)
