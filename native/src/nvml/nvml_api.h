// The part of the NVML C API Kintsugi uses, declared from NVML's documented signatures (the
// toolkit's nvml.h is not included and libnvidia-ml is not linked: it is loaded at run time), and
// the process-wide table of its entry points.
#pragma once
#include <string>

namespace kintsugi::nvml::api {

typedef int nvmlReturn_t;  // an enum in nvml.h: 0 is success
typedef struct nvmlDevice_st* nvmlDevice_t;
struct nvmlUtilization_t {
  unsigned int gpu;     // percent
  unsigned int memory;  // percent
};
struct nvmlMemory_t {
  unsigned long long total, free, used;  // bytes
};

constexpr nvmlReturn_t NVML_SUCCESS = 0;
constexpr nvmlReturn_t NVML_ERROR_NOT_SUPPORTED = 3;
constexpr int NVML_CLOCK_SM = 1;
constexpr int NVML_TEMPERATURE_GPU = 0;
constexpr unsigned int kNameLength = 96;  // NVML_DEVICE_NAME_V2_BUFFER_SIZE
constexpr unsigned int kUuidLength = 96;  // NVML_DEVICE_UUID_V2_BUFFER_SIZE

struct Functions {
  nvmlReturn_t (*Init_v2)();
  nvmlReturn_t (*Shutdown)();
  const char* (*ErrorString)(nvmlReturn_t);
  nvmlReturn_t (*DeviceGetCount_v2)(unsigned int*);
  nvmlReturn_t (*DeviceGetHandleByIndex_v2)(unsigned int, nvmlDevice_t*);
  nvmlReturn_t (*DeviceGetHandleByUUID)(const char*, nvmlDevice_t*);
  nvmlReturn_t (*DeviceGetName)(nvmlDevice_t, char*, unsigned int);
  nvmlReturn_t (*DeviceGetUUID)(nvmlDevice_t, char*, unsigned int);
  nvmlReturn_t (*DeviceGetUtilizationRates)(nvmlDevice_t, nvmlUtilization_t*);
  nvmlReturn_t (*DeviceGetMemoryInfo)(nvmlDevice_t, nvmlMemory_t*);
  nvmlReturn_t (*DeviceGetClockInfo)(nvmlDevice_t, int, unsigned int*);
  nvmlReturn_t (*DeviceGetPowerUsage)(nvmlDevice_t, unsigned int*);  // milliwatts
  nvmlReturn_t (*DeviceGetTemperature)(nvmlDevice_t, int, unsigned int*);
};

// The loaded table. Valid while the caller holds a Session (nvml.h).
const Functions& functions();

// Throws Error(Device, "<function> failed: <nvmlErrorString>") unless `r` is NVML_SUCCESS.
void check(nvmlReturn_t r, const char* function);
std::string error_string(nvmlReturn_t r);

}  // namespace kintsugi::nvml::api
