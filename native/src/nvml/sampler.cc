// The NVML sampler: a native thread on an absolute steady-clock schedule (tick k is due at
// start + k * interval, so per-sample overheads do not accumulate into drift) feeding a bounded
// ring buffer that the consumer drains.
#include <time.h>

#include <chrono>
#include <cmath>

#include "kintsugi/error.h"
#include "kintsugi/nvml.h"
#include "nvml_api.h"

namespace kintsugi::nvml {
namespace {

double steady_ms() { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
double epoch_ms() { return std::chrono::duration<double, std::milli>(std::chrono::system_clock::now().time_since_epoch()).count(); }

// CPU time of the calling thread: what sampling costs, apart from the rest of the process.
double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
}

// True when the field was read; false (the field becomes NaN) when the device does not report it.
bool read(api::nvmlReturn_t r, const char* function) {
  if (r == api::NVML_ERROR_NOT_SUPPORTED) return false;
  api::check(r, function);
  return true;
}

}  // namespace

void pack(const Sample& s, double* out) {
  const double v[kSampleFields] = {s.time_ms, s.epoch_ms, s.gpu_util, s.mem_util, s.mem_used, s.mem_total, s.sm_clock_mhz, s.power_w, s.temperature_c};
  for (int i = 0; i < kSampleFields; ++i) out[i] = v[i];
}

Sampler::Sampler(int index, const std::string& uuid, size_t capacity, const std::string& library) : session_(library) {
  if (capacity < 1) throw_expected(ErrorKind::Range, "a buffer of at least 1 sample", "capacity", std::to_string(capacity));
  const api::Functions& f = api::functions();
  api::nvmlDevice_t device = nullptr;
  if (!uuid.empty()) {
    api::nvmlReturn_t r = f.DeviceGetHandleByUUID(uuid.c_str(), &device);
    if (r == 6 /* NVML_ERROR_NOT_FOUND */ || r == 2 /* NVML_ERROR_INVALID_ARGUMENT */)
      throw_expected(ErrorKind::Range, "the UUID of an NVML device", "device", "\"" + uuid + "\"");
    api::check(r, "nvmlDeviceGetHandleByUUID");
  } else {
    unsigned int count = 0;
    api::check(f.DeviceGetCount_v2(&count), "nvmlDeviceGetCount_v2");
    if (index < 0 || unsigned(index) >= count)
      throw_expected(ErrorKind::Range, count ? "a device index in [0, " + std::to_string(count - 1) + "]" : "a device index (NVML reports no devices)",
                     "device", std::to_string(index));
    api::check(f.DeviceGetHandleByIndex_v2(unsigned(index), &device), "nvmlDeviceGetHandleByIndex_v2");
  }
  char name[api::kNameLength] = {0};
  api::check(f.DeviceGetName(device, name, sizeof(name)), "nvmlDeviceGetName");
  device_ = device;
  name_ = name;
  ring_.resize(capacity);
}

Sampler::~Sampler() { stop(); }

Sample Sampler::sample_now() const {
  const api::Functions& f = api::functions();
  auto device = static_cast<api::nvmlDevice_t>(device_);
  Sample s;
  s.time_ms = steady_ms();
  s.epoch_ms = epoch_ms();
  api::nvmlUtilization_t util{};
  bool ok = read(f.DeviceGetUtilizationRates(device, &util), "nvmlDeviceGetUtilizationRates");
  s.gpu_util = ok ? double(util.gpu) : NAN;
  s.mem_util = ok ? double(util.memory) : NAN;
  api::nvmlMemory_t memory{};
  ok = read(f.DeviceGetMemoryInfo(device, &memory), "nvmlDeviceGetMemoryInfo");
  s.mem_used = ok ? double(memory.used) : NAN;
  s.mem_total = ok ? double(memory.total) : NAN;
  unsigned int value = 0;
  s.sm_clock_mhz = read(f.DeviceGetClockInfo(device, api::NVML_CLOCK_SM, &value), "nvmlDeviceGetClockInfo") ? double(value) : NAN;
  s.power_w = read(f.DeviceGetPowerUsage(device, &value), "nvmlDeviceGetPowerUsage") ? double(value) * 1e-3 : NAN;  // milliwatts
  s.temperature_c = read(f.DeviceGetTemperature(device, api::NVML_TEMPERATURE_GPU, &value), "nvmlDeviceGetTemperature") ? double(value) : NAN;
  return s;
}

void Sampler::start(double interval_ms) {
  if (!(interval_ms >= 1.0) || !std::isfinite(interval_ms))
    throw_expected(ErrorKind::Range, "an interval of at least 1 ms", "intervalMs", std::to_string(interval_ms));
  if (running_.load()) throw Error(ErrorKind::Unsupported, "the NVML sampler is already running: stop() it first");
  if (thread_.joinable()) thread_.join();  // a run that ended on an NVML error
  {
    std::lock_guard<std::mutex> lock(mutex_);
    head_ = size_ = 0;
    samples_ = drops_ = late_ = 0;
    cpu_ms_ = 0;
    error_.clear();
    stop_ = false;
    start_ms_ = steady_ms();
    stop_ms_ = start_ms_;
  }
  running_.store(true);
  thread_ = std::thread([this, interval_ms] { loop(interval_ms); });
}

void Sampler::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Sampler::push(const Sample& s) {
  const size_t capacity = ring_.size();
  if (size_ == capacity) {  // full: the oldest sample makes room
    ring_[head_] = s;
    head_ = (head_ + 1) % capacity;
    ++drops_;
  } else {
    ring_[(head_ + size_) % capacity] = s;
    ++size_;
  }
  ++samples_;
}

void Sampler::loop(double interval_ms) {
  using Clock = std::chrono::steady_clock;
  const double cpu0 = thread_cpu_ms();
  const auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(interval_ms));
  auto next = Clock::now();
  for (;;) {
    Sample s;
    std::string error;
    try {
      s = sample_now();
    } catch (const std::exception& e) {
      error = e.what();
    }
    next += period;
    // Behind by whole periods (a long NVML call, a descheduled thread): skip those ticks rather than
    // firing a burst, and count them. Less than one period late: sample at once, on schedule again.
    const auto now = Clock::now();
    uint64_t skipped = 0;
    if (now - next >= period) {
      skipped = uint64_t((now - next) / period);
      next += period * int64_t(skipped);
    }
    std::unique_lock<std::mutex> lock(mutex_);
    cpu_ms_ = thread_cpu_ms() - cpu0;
    late_ += skipped;
    bool done = true;
    if (error.empty()) {
      push(s);
      done = wake_.wait_until(lock, next, [this] { return stop_; });
    } else {
      error_ = error;
    }
    if (done) {
      // Under the lock: stats() sees the final figures together with running() == false.
      cpu_ms_ = thread_cpu_ms() - cpu0;
      stop_ms_ = steady_ms();
      running_.store(false);
      return;
    }
  }
}

size_t Sampler::drain(std::vector<Sample>& out) {
  std::lock_guard<std::mutex> lock(mutex_);
  const size_t n = size_, capacity = ring_.size();
  for (size_t i = 0; i < n; ++i) out.push_back(ring_[(head_ + i) % capacity]);
  head_ = size_ = 0;
  return n;
}

SamplerStats Sampler::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  SamplerStats st;
  st.samples = samples_;
  st.drops = drops_;
  st.late_ticks = late_;
  st.thread_cpu_ms = cpu_ms_;
  st.running = running_.load();
  st.wall_ms = (st.running ? steady_ms() : stop_ms_) - start_ms_;
  st.buffered = size_;
  st.error = error_;
  return st;
}

}  // namespace kintsugi::nvml
