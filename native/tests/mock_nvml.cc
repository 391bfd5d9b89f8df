// A stand-in for libnvidia-ml.so.1 in tests (built as libmock_nvml.so, loaded through
// KINTSUGI_NVML_LIBRARY): the NVML entry points Kintsugi uses, with deterministic values that
// change on every call, NVML's init reference counting, and failures switched on by env vars:
//   MOCK_NVML_FAIL_INIT=1     nvmlInit_v2 returns NVML_ERROR_DRIVER_NOT_LOADED
//   MOCK_NVML_FAIL_AFTER=N    utilization reads fail with NVML_ERROR_GPU_IS_LOST after N calls
//   MOCK_NVML_DEVICES=N       device count (default 2)
// Power is never supported (NVML_ERROR_NOT_SUPPORTED), as on many consumer boards.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

enum : int {
  kSuccess = 0, kUninitialized = 1, kInvalidArgument = 2, kNotSupported = 3, kNotFound = 6, kInsufficientSize = 7,
  kDriverNotLoaded = 9, kGpuIsLost = 15,
};

struct Device {
  int index;
  std::atomic<unsigned> calls{0};  // utilization reads so far
};
Device devices[8] = {{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}};
std::atomic<int> init_count{0};

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}
int device_count() {
  int n = env_int("MOCK_NVML_DEVICES", 2);
  return n < 0 ? 0 : n > 8 ? 8 : n;
}
Device* as_device(void* handle) {
  for (Device& d : devices)
    if (handle == &d) return d.index < device_count() ? &d : nullptr;
  return nullptr;
}
int copy(const char* text, char* out, unsigned length) {
  if (!out) return kInvalidArgument;
  if (std::strlen(text) + 1 > length) return kInsufficientSize;
  std::strcpy(out, text);
  return kSuccess;
}

}  // namespace

extern "C" {

struct MockUtilization { unsigned gpu, memory; };
struct MockMemory { unsigned long long total, free, used; };

// How many nvmlInit_v2 calls are not yet matched by nvmlShutdown (for the native test).
int mock_nvml_init_count() { return init_count.load(); }

int nvmlInit_v2() {
  if (env_int("MOCK_NVML_FAIL_INIT", 0)) return kDriverNotLoaded;
  if (init_count.fetch_add(1) == 0)
    for (Device& d : devices) d.calls = 0;  // each init starts the values over
  return kSuccess;
}
int nvmlShutdown() {
  int n = init_count.load();
  while (n > 0 && !init_count.compare_exchange_weak(n, n - 1)) {
  }
  return n > 0 ? kSuccess : kUninitialized;
}
const char* nvmlErrorString(int r) {
  switch (r) {
    case kSuccess: return "Success";
    case kUninitialized: return "Uninitialized";
    case kInvalidArgument: return "Invalid Argument";
    case kNotSupported: return "Not Supported";
    case kNotFound: return "Not Found";
    case kInsufficientSize: return "Insufficient Size";
    case kDriverNotLoaded: return "Driver Not Loaded";
    case kGpuIsLost: return "GPU is lost";
    default: return "Unknown Error";
  }
}
int nvmlDeviceGetCount_v2(unsigned* count) {
  if (init_count.load() == 0) return kUninitialized;
  if (!count) return kInvalidArgument;
  *count = unsigned(device_count());
  return kSuccess;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned index, void** device) {
  if (init_count.load() == 0) return kUninitialized;
  if (!device || index >= unsigned(device_count())) return kInvalidArgument;
  *device = &devices[index];
  return kSuccess;
}
int nvmlDeviceGetHandleByUUID(const char* uuid, void** device) {
  if (init_count.load() == 0) return kUninitialized;
  if (!uuid || !device) return kInvalidArgument;
  for (int i = 0; i < device_count(); ++i) {
    char want[64];
    std::snprintf(want, sizeof(want), "GPU-00000000-0000-0000-0000-00000000000%d", i);
    if (std::strcmp(uuid, want) == 0) {
      *device = &devices[i];
      return kSuccess;
    }
  }
  return kNotFound;
}
int nvmlDeviceGetName(void* handle, char* name, unsigned length) {
  Device* d = as_device(handle);
  if (init_count.load() == 0) return kUninitialized;
  if (!d) return kInvalidArgument;
  char text[64];
  std::snprintf(text, sizeof(text), "Mock GPU %d", d->index);
  return copy(text, name, length);
}
int nvmlDeviceGetUUID(void* handle, char* uuid, unsigned length) {
  Device* d = as_device(handle);
  if (init_count.load() == 0) return kUninitialized;
  if (!d) return kInvalidArgument;
  char text[64];
  std::snprintf(text, sizeof(text), "GPU-00000000-0000-0000-0000-00000000000%d", d->index);
  return copy(text, uuid, length);
}
// utilization.gpu = calls % 101 (0, 1, 2, ... 100, 0, ...); utilization.memory = half of it.
int nvmlDeviceGetUtilizationRates(void* handle, MockUtilization* out) {
  Device* d = as_device(handle);
  if (init_count.load() == 0) return kUninitialized;
  if (!d || !out) return kInvalidArgument;
  const unsigned call = d->calls.fetch_add(1);
  const int fail_after = env_int("MOCK_NVML_FAIL_AFTER", -1);
  if (fail_after >= 0 && call >= unsigned(fail_after)) return kGpuIsLost;
  out->gpu = call % 101;
  out->memory = out->gpu / 2;
  return kSuccess;
}
// 16 GiB total; used = 1 GiB + 1 MiB per utilization read so far.
int nvmlDeviceGetMemoryInfo(void* handle, MockMemory* out) {
  Device* d = as_device(handle);
  if (init_count.load() == 0) return kUninitialized;
  if (!d || !out) return kInvalidArgument;
  out->total = 16ull << 30;
  out->used = (1ull << 30) + (unsigned long long)d->calls.load() * (1ull << 20);
  out->free = out->total - out->used;
  return kSuccess;
}
int nvmlDeviceGetClockInfo(void* handle, int type, unsigned* clock) {
  Device* d = as_device(handle);
  if (init_count.load() == 0) return kUninitialized;
  if (!d || !clock) return kInvalidArgument;
  if (type != 1 /* NVML_CLOCK_SM */) return kNotSupported;
  *clock = 1000 + 100 * unsigned(d->index);
  return kSuccess;
}
int nvmlDeviceGetPowerUsage(void* handle, unsigned* milliwatts) {
  if (init_count.load() == 0) return kUninitialized;
  return as_device(handle) ? kNotSupported : kInvalidArgument;
}
int nvmlDeviceGetTemperature(void* handle, int sensor, unsigned* celsius) {
  Device* d = as_device(handle);
  if (init_count.load() == 0) return kUninitialized;
  if (!d || !celsius || sensor != 0 /* NVML_TEMPERATURE_GPU */) return kInvalidArgument;
  *celsius = 40 + unsigned(d->index);
  return kSuccess;
}

}  // extern "C"
