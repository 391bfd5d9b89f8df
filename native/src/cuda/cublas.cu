// cuBLAS as a GEMM backend, loaded with dlopen on first use so the addon neither links it nor
// needs it at build time (the toolkit may not ship it). The few entry points are declared here
// from cuBLAS's documented C API (cublas_api.h); enum values are the documented ones.
#include <dlfcn.h>

#include <mutex>
#include <unordered_map>

#include "common.cuh"

namespace kintsugi::cuda {
namespace {

using cublasHandle_t = void*;
using cublasStatus_t = int;
constexpr cublasStatus_t kCublasSuccess = 0;
constexpr int kOpN = 0, kOpT = 1;                        // cublasOperation_t
constexpr int kR16F = 2, kR32F = 0, kR16BF = 14;          // cudaDataType (library_types.h)
constexpr int kCompute32F = 68, kCompute32FFastTF32 = 77;  // cublasComputeType_t
constexpr int kGemmDefault = -1;                          // cublasGemmAlgo_t

struct Cublas {
  void* lib = nullptr;
  std::string why;  // why it did not load
  std::string name;  // the library that loaded
  cublasStatus_t (*create)(cublasHandle_t*) = nullptr;
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t) = nullptr;
  cublasStatus_t (*gemm_ex)(cublasHandle_t, int, int, int, int, int, const void*, const void*, int, int, const void*, int, int,
                            const void*, void*, int, int, int, int) = nullptr;
  const char* (*status_name)(cublasStatus_t) = nullptr;  // cuBLAS >= 11.4.2; optional
};

const Cublas& cublas() {
  static Cublas c;
  static std::once_flag once;
  std::call_once(once, [] {
    std::string tried;
    for (const char* name : {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}) {
      void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (lib) {
        c.lib = lib;
        c.name = name;
        break;
      }
      const char* err = dlerror();
      tried += std::string(tried.empty() ? "" : "; ") + (err ? err : name);
    }
    if (!c.lib) {
      c.why = "cuBLAS is not available: could not load libcublas.so.13, libcublas.so.12 or libcublas.so.11 (" + tried + ")";
      return;
    }
    c.create = reinterpret_cast<decltype(c.create)>(dlsym(c.lib, "cublasCreate_v2"));
    c.set_stream = reinterpret_cast<decltype(c.set_stream)>(dlsym(c.lib, "cublasSetStream_v2"));
    c.gemm_ex = reinterpret_cast<decltype(c.gemm_ex)>(dlsym(c.lib, "cublasGemmEx"));
    c.status_name = reinterpret_cast<decltype(c.status_name)>(dlsym(c.lib, "cublasGetStatusName"));
    if (!c.create || !c.set_stream || !c.gemm_ex) {
      c.why = "cuBLAS is not usable: " + c.name + " lacks cublasCreate_v2, cublasSetStream_v2 or cublasGemmEx";
      c.lib = nullptr;
    }
  });
  return c;
}

void check_cublas(cublasStatus_t status, const char* call) {
  if (status == kCublasSuccess) return;
  const Cublas& c = cublas();
  std::string name = c.status_name ? c.status_name(status) : "CUBLAS_STATUS_" + std::to_string(status);
  throw Error(status == 3 /* ALLOC_FAILED */ ? ErrorKind::OutOfMemory : ErrorKind::Device, std::string(call) + " failed: " + name);
}

// One handle per (thread, device): a handle's stream is per-handle state, and libuv's workers
// may run GEMMs on different streams at once. Handles live as long as the thread.
cublasHandle_t handle_for(int device) {
  thread_local std::unordered_map<int, cublasHandle_t> handles;
  auto it = handles.find(device);
  if (it != handles.end()) return it->second;
  cublasHandle_t h = nullptr;
  check_cublas(cublas().create(&h), "cublasCreate_v2");
  handles.emplace(device, h);
  return h;
}

int data_type(DType t) {
  switch (t) {
    case DType::F32: return kR32F;
    case DType::F16: return kR16F;
    case DType::BF16: return kR16BF;
  }
  return kR32F;
}

}  // namespace

bool cublas_available(std::string* why) {
  const Cublas& c = cublas();
  if (why) *why = c.lib ? c.name : c.why;
  return c.lib != nullptr;
}

void gemm_cublas(int device, const GemmArgs& g, Stream stream) {
  validate_gemm(g);
  const Cublas& c = cublas();
  if (!c.lib) throw Error(ErrorKind::Unsupported, c.why);
  if (g.m == 0 || g.n == 0) return;
  const int64_t limit = 0x7fffffff;
  if (g.m > limit || g.n > limit || g.k > limit || g.lda > limit || g.ldb > limit || g.ldc > limit) {
    throw_expected(ErrorKind::Range, "sizes and leading dimensions below 2^31", "cuBLAS gemm", "larger values");
  }
  use_device(device);
  cublasHandle_t h = handle_for(device);
  check_cublas(c.set_stream(h, as_stream(stream)), "cublasSetStream_v2");
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands, keep
  // each one's transpose flag, and pass n and m.
  const int compute = (g.ab == DType::F32 && g.tf32) ? kCompute32FFastTF32 : kCompute32F;
  check_cublas(c.gemm_ex(h, g.trans_b ? kOpT : kOpN, g.trans_a ? kOpT : kOpN, int(g.n), int(g.m), int(g.k), &g.alpha, g.b, data_type(g.ab),
                         int(g.ldb), g.a, data_type(g.ab), int(g.lda), &g.beta, g.c, data_type(g.c_type), int(g.ldc), compute, kGemmDefault),
               "cublasGemmEx");
}

}  // namespace kintsugi::cuda
