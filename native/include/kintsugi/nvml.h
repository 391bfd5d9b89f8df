// GPU utilization sampling through NVML. libnvidia-ml.so.1 is loaded with dlopen at run time (never
// linked), so the addon loads on machines without a driver; there, every entry point throws
// Error(Unsupported, "NVML not available: ..."). KINTSUGI_NVML_LIBRARY overrides the library path;
// it is read on every attempt while no library is loaded, so tests can switch it.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kintsugi::nvml {

// One sample. A field the device does not report (NVML_ERROR_NOT_SUPPORTED) is NaN.
struct Sample {
  double time_ms = 0;       // steady clock (monotonic), for intervals
  double epoch_ms = 0;      // wall clock (Unix epoch), for correlating with logs
  double gpu_util = 0;      // % of the last period in which a kernel ran (NVML utilization.gpu)
  double mem_util = 0;      // % of the last period in which device memory was read or written
  double mem_used = 0;      // bytes
  double mem_total = 0;     // bytes
  double sm_clock_mhz = 0;
  double power_w = 0;
  double temperature_c = 0;
};
// Sample packed as doubles, in the order above (the binding hands JS a Float64Array).
constexpr int kSampleFields = 9;
void pack(const Sample& s, double* out);

struct Availability {
  bool available = false;
  std::string reason;   // why not, or "" when available
  std::string library;  // the path that was (or would be) loaded
};
// Loads and initialises NVML once and releases it again; never throws. `library` overrides the
// path ("" = $KINTSUGI_NVML_LIBRARY or libnvidia-ml.so.1).
Availability availability(const std::string& library = "");

struct DeviceInfo {
  int index = 0;
  std::string name, uuid;
  double memory_total = 0;  // bytes
};
std::vector<DeviceInfo> list_devices(const std::string& library = "");

// A reference to the initialised library: nvmlInit_v2 on the first, nvmlShutdown after the last.
class Session {
 public:
  explicit Session(const std::string& library = "");
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
};

struct SamplerStats {
  uint64_t samples = 0;     // taken in this run (including dropped ones)
  uint64_t drops = 0;       // overwritten in the ring buffer before they were drained
  uint64_t late_ticks = 0;  // ticks skipped because a sample overran its slot
  double thread_cpu_ms = 0; // CPU time of the sampler thread in this run
  double wall_ms = 0;       // start to stop (or to now while running)
  size_t buffered = 0;      // waiting to be drained
  bool running = false;
  std::string error;        // the NVML failure that ended the run, or ""
};

// Samples one device on its own thread every `interval_ms` into a bounded ring buffer (the oldest
// sample is dropped when full) that the consumer drains.
class Sampler {
 public:
  // Opens device `index` (or the one with `uuid` when that is not empty). Throws Range when the
  // index is not below the device count.
  Sampler(int index, const std::string& uuid, size_t capacity, const std::string& library = "");
  ~Sampler();  // stops
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  void start(double interval_ms);  // interval >= 1 ms; throws when already running
  void stop();                     // joins the thread; a no-op when stopped
  bool running() const { return running_.load(); }
  size_t drain(std::vector<Sample>& out);  // appends the buffered samples, oldest first
  SamplerStats stats() const;
  Sample sample_now() const;  // one sample on the calling thread; throws on an NVML error
  const std::string& name() const { return name_; }

 private:
  void loop(double interval_ms);
  void push(const Sample& s);

  Session session_;
  void* device_ = nullptr;  // nvmlDevice_t
  std::string name_;
  std::vector<Sample> ring_;
  size_t head_ = 0, size_ = 0;  // oldest sample, count
  mutable std::mutex mutex_;    // guards the ring, the counters and stop_
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
  std::atomic<bool> running_{false};
  uint64_t samples_ = 0, drops_ = 0, late_ = 0;
  double cpu_ms_ = 0, start_ms_ = 0, stop_ms_ = 0;
  std::string error_;
};

}  // namespace kintsugi::nvml
