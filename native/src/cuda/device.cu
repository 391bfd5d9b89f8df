// CUDA device enumeration. cudart is linked statically, so the addon loads on machines with no
// driver: cudaGetDeviceCount then fails with cudaErrorInsufficientDriver / NoDevice, which we
// report as zero devices with the reason.
#include <cuda_runtime.h>

#include <mutex>
#include <string>

#include "kintsugi/device.h"
#include "kintsugi/error.h"

namespace kintsugi {
namespace cuda {
namespace {

struct Enumeration {
  int count = 0;
  std::string why;
};

const Enumeration& enumerate() {
  static Enumeration result;
  static std::once_flag once;
  std::call_once(once, [] {
    int count = 0;  // left unwritten by some failures: start from 0
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      result.count = 0;
      result.why = std::string("no usable CUDA device: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
      cudaGetLastError();  // clear the sticky error state
    } else {
      result.count = count;
      if (count == 0) result.why = "no CUDA device found";
    }
  });
  return result;
}

}  // namespace

bool compiled() { return true; }

int device_count(std::string* why) {
  const Enumeration& e = enumerate();
  if (why) *why = e.why;
  return e.count;
}

DeviceInfo device_info(int index) {
  int count = enumerate().count;
  if (index < 0 || index >= count) {
    throw Error(ErrorKind::Range, "Expected a CUDA device index in [0, " + std::to_string(count) + ") for device but received " + std::to_string(index));
  }
  cudaDeviceProp prop;
  cudaError_t err = cudaGetDeviceProperties(&prop, index);
  if (err != cudaSuccess) {
    throw Error(ErrorKind::Device, std::string("cudaGetDeviceProperties failed: ") + cudaGetErrorName(err));
  }
  DeviceInfo info;
  info.kind = DeviceKind::Cuda;
  info.index = index;
  info.name = prop.name;
  info.total_memory = int64_t(prop.totalGlobalMem);
  info.multiprocessors = prop.multiProcessorCount;
  info.threads = prop.multiProcessorCount * prop.maxThreadsPerMultiProcessor;
  int clock_khz = 0;
  cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, index);
  info.clock_khz = clock_khz;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  info.isa = "sm_" + std::to_string(prop.major) + std::to_string(prop.minor);
  return info;
}

// Every op of the kernel API has a CUDA implementation (gemm.cu, conv.cu, checksum.cu, parity.cu,
// embedding.cu), used on DeviceTensors.
bool supports_op(Op) { return true; }

}  // namespace cuda
}  // namespace kintsugi
