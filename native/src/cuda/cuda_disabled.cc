// The CUDA backend when the addon was built without nvcc: no devices, every op unsupported.
#include "kintsugi/device.h"
#include "kintsugi/error.h"

namespace kintsugi {
namespace cuda {

bool compiled() { return false; }

int device_count(std::string* why) {
  if (why) *why = "the addon was built without the CUDA backend (nvcc was not found at build time)";
  return 0;
}

DeviceInfo device_info(int index) {
  throw Error(ErrorKind::Unsupported, "CUDA device " + std::to_string(index) + " is not available: the addon was built without the CUDA backend");
}

bool supports_op(Op) { return false; }

}  // namespace cuda
}  // namespace kintsugi
