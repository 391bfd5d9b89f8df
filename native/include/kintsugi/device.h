// Devices the addon can run on and the seam between backends. The CPU is always present; CUDA
// devices are listed when the CUDA backend was built and a driver and GPU are present.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kintsugi {

enum class DeviceKind { Cpu, Cuda };

struct DeviceInfo {
  DeviceKind kind = DeviceKind::Cpu;
  int index = 0;
  std::string name;
  int64_t total_memory = 0;       // bytes
  int threads = 0;                // CPU: pool threads; CUDA: SM count x max threads per SM
  std::string isa;                // CPU: active ISA; CUDA: "sm_XY"
  int multiprocessors = 0;        // CUDA SM count (CPU: cores)
  int clock_khz = 0;              // CUDA SM clock
  int compute_major = 0, compute_minor = 0;
};

// Operations a backend may implement; supports_op() tells which ones it does.
enum class Op { Sgemm, Conv2dForward, Conv2dBackwardData, Conv2dBackwardWeight, Checksum, XorParity, SumParity, EmbeddingBag };

std::vector<DeviceInfo> list_devices();
bool supports_op(DeviceKind kind, Op op);

namespace cuda {
// Whether the addon was built with the CUDA backend.
bool compiled();
// Number of usable GPUs (0 when none, no driver, or not compiled); `why` receives the reason for 0.
int device_count(std::string* why);
DeviceInfo device_info(int index);
bool supports_op(Op op);
}  // namespace cuda

}  // namespace kintsugi
