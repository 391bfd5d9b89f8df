#include "kintsugi/device.h"

#include "kintsugi/cpu.h"
#include "kintsugi/threadpool.h"

#include <unistd.h>

namespace kintsugi {

std::vector<DeviceInfo> list_devices() {
  std::vector<DeviceInfo> devices;
  DeviceInfo cpu;
  cpu.kind = DeviceKind::Cpu;
  cpu.index = 0;
  cpu.name = cpu_info().brand;
  long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
  cpu.total_memory = pages > 0 && page_size > 0 ? int64_t(pages) * page_size : 0;
  cpu.threads = num_threads();
  cpu.multiprocessors = cpu_info().logical_cores;
  cpu.isa = isa_name(active_isa());
  devices.push_back(cpu);
  std::string why;
  int gpus = cuda::device_count(&why);
  for (int i = 0; i < gpus; ++i) devices.push_back(cuda::device_info(i));
  return devices;
}

bool supports_op(DeviceKind kind, Op op) {
  if (kind == DeviceKind::Cpu) return true;  // the CPU implements every op: it is the oracle
  return cuda::supports_op(op);
}

}  // namespace kintsugi
