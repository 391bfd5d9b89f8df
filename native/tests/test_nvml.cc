// NVML sampling against the mock library (tests/mock_nvml.cc, path from CMake): loading errors,
// init reference counting, the sampler's schedule, values, NaN fields, ring buffer and restarts.
#include <dlfcn.h>
#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "kintsugi/error.h"
#include "kintsugi/nvml.h"

#ifndef KINTSUGI_MOCK_NVML_PATH
#error "CMake passes the mock library's path as KINTSUGI_MOCK_NVML_PATH"
#endif

using kintsugi::Error;
using kintsugi::ErrorKind;
namespace nvml = kintsugi::nvml;

namespace {

const char* kMock = KINTSUGI_MOCK_NVML_PATH;

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// Sleeps at least `ms`, then on until the sampler has taken `n` samples (at most 5 s): on a busy
// machine the sampler thread may be starved for a while, and the checks need a few samples.
void run_for(const nvml::Sampler& s, int ms, uint64_t n) {
  sleep_ms(ms);
  for (int i = 0; i < 5000 && s.stats().samples < n; ++i) sleep_ms(1);
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// The mock's count of nvmlInit_v2 calls not yet matched by nvmlShutdown.
int mock_init_count() {
  void* h = dlopen(kMock, RTLD_NOW | RTLD_NOLOAD);
  if (!h) return -1;
  auto fn = reinterpret_cast<int (*)()>(dlsym(h, "mock_nvml_init_count"));
  int n = fn ? fn() : -2;
  dlclose(h);  // drops only the reference RTLD_NOLOAD added
  return n;
}

// Runs `fn`, expecting Error of `kind` whose message contains `text`.
template <typename F> void expect_error(F fn, ErrorKind kind, const std::string& text) {
  try {
    fn();
    CHECK(false) << "expected an error containing '" << text << "'";
  } catch (const Error& e) {
    CHECK(e.kind() == kind) << "wrong kind for: " << e.what();
    CHECK(std::string(e.what()).find(text) != std::string::npos) << "message: " << e.what() << " lacks: " << text;
  }
}

}  // namespace

// Runs first: nothing may be loaded yet, as the library stays loaded once it was.
TEST(missing_library) {
  setenv("KINTSUGI_NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1", 1);
  nvml::Availability a = nvml::availability();
  CHECK(!a.available);
  CHECK(starts_with(a.reason, "NVML not available: could not load /nonexistent/libnvidia-ml.so.1 (")) << a.reason;
  CHECK(a.reason.find("No such file") != std::string::npos) << "dlerror text missing: " << a.reason;
  expect_error([] { nvml::Sampler s(0, "", 16); }, ErrorKind::Unsupported, "NVML not available: could not load");
  expect_error([] { nvml::list_devices(); }, ErrorKind::Unsupported, "NVML not available");
  // The default path, when this machine has no driver (with one, loading it would pin it for the
  // rest of this process and the mock could not be tested).
  unsetenv("KINTSUGI_NVML_LIBRARY");
  void* real = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (real) {
    dlclose(real);
    std::printf("  (libnvidia-ml.so.1 present: default-path message not checked)\n");
  } else {
    a = nvml::availability();
    CHECK(!a.available);
    CHECK(a.library == "libnvidia-ml.so.1") << a.library;
    CHECK(starts_with(a.reason, "NVML not available: could not load libnvidia-ml.so.1 (")) << a.reason;
    CHECK(a.reason.back() == ')') << a.reason;
  }
}

TEST(init_failure) {
  setenv("KINTSUGI_NVML_LIBRARY", kMock, 1);
  setenv("MOCK_NVML_FAIL_INIT", "1", 1);
  nvml::Availability a = nvml::availability();
  CHECK(!a.available);
  CHECK(a.reason == "nvmlInit_v2 failed: Driver Not Loaded (NVML error 9)") << a.reason;
  expect_error([] { nvml::Sampler s(0, "", 16); }, ErrorKind::Device, "nvmlInit_v2 failed: Driver Not Loaded");
  CHECK(mock_init_count() == 0);
  unsetenv("MOCK_NVML_FAIL_INIT");  // the next attempt initialises
  a = nvml::availability();
  CHECK(a.available) << a.reason;
  CHECK(a.library == kMock) << a.library;
  CHECK(mock_init_count() == 0) << "availability() must shut NVML down again";
}

TEST(devices_and_reference_counting) {
  auto list = nvml::list_devices();
  CHECK(list.size() == 2) << list.size();
  if (list.size() == 2) {
    CHECK(list[1].index == 1);
    CHECK(list[1].name == "Mock GPU 1") << list[1].name;
    CHECK(list[1].uuid == "GPU-00000000-0000-0000-0000-000000000001") << list[1].uuid;
    CHECK(list[1].memory_total == double(16ull << 30));
  }
  {
    nvml::Sampler a(0, "", 8), b(1, "", 8);
    CHECK(mock_init_count() == 1) << "two users, one nvmlInit_v2: " << mock_init_count();
    CHECK(a.name() == "Mock GPU 0" && b.name() == "Mock GPU 1");
    nvml::Sampler by_uuid(0, "GPU-00000000-0000-0000-0000-000000000001", 8);
    CHECK(by_uuid.name() == "Mock GPU 1") << by_uuid.name();
  }
  CHECK(mock_init_count() == 0) << "the last user shuts NVML down";
}

TEST(invalid_arguments) {
  expect_error([] { nvml::Sampler s(2, "", 8); }, ErrorKind::Range, "Expected a device index in [0, 1] for device but received 2");
  expect_error([] { nvml::Sampler s(-1, "", 8); }, ErrorKind::Range, "for device but received -1");
  expect_error([] { nvml::Sampler s(0, "GPU-nope", 8); }, ErrorKind::Range, "Expected the UUID of an NVML device");
  expect_error([] { nvml::Sampler s(0, "", 0); }, ErrorKind::Range, "capacity");
  nvml::Sampler s(0, "", 8);
  expect_error([&] { s.start(0.5); }, ErrorKind::Range, "Expected an interval of at least 1 ms");
  expect_error([&] { s.start(NAN); }, ErrorKind::Range, "intervalMs");
  s.start(5);
  expect_error([&] { s.start(5); }, ErrorKind::Unsupported, "already running");
  s.stop();
  CHECK(mock_init_count() == 1);
}

TEST(sampling_at_1ms) {
  nvml::Sampler s(1, "", 1024);
  const double epoch0 = double(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  s.start(1);
  CHECK(s.running());
  run_for(s, 50, 3);
  s.stop();
  CHECK(!s.running());
  std::vector<nvml::Sample> v;
  s.drain(v);
  nvml::SamplerStats st = s.stats();
  CHECK(st.samples == v.size()) << st.samples << " vs " << v.size();
  CHECK(st.drops == 0 && st.buffered == 0 && st.error.empty());
  // ~50 ticks of 1 ms. A busy machine can starve the thread (skipped ticks are counted as late); it
  // never takes more samples than there were ticks.
  CHECK(v.size() >= 3 && double(v.size() + st.late_ticks) <= st.wall_ms + 2) << v.size() << " samples, " << st.late_ticks << " late, in " << st.wall_ms << " ms";
  CHECK(st.wall_ms >= 49) << st.wall_ms;
  CHECK(st.thread_cpu_ms > 0 && st.thread_cpu_ms < st.wall_ms) << st.thread_cpu_ms;
  if (v.size() < 2) return;
  for (size_t i = 0; i < v.size(); ++i) {
    const nvml::Sample& x = v[i];
    // The mock's utilization.gpu counts its reads from 0 (a fresh init), memory used grows 1 MiB per read.
    CHECK(x.gpu_util == double(i % 101)) << "sample " << i << ": " << x.gpu_util;
    CHECK(x.mem_util == std::floor(x.gpu_util / 2));
    CHECK(x.mem_used == double((1ull << 30) + (i + 1) * (1ull << 20))) << "sample " << i;
    CHECK(x.mem_total == double(16ull << 30));
    CHECK(x.sm_clock_mhz == 1100 && x.temperature_c == 41);
    CHECK(std::isnan(x.power_w)) << "power is NOT_SUPPORTED by the mock";
    CHECK(x.epoch_ms >= epoch0 - 1 && x.epoch_ms < epoch0 + 10000) << x.epoch_ms;
    if (i > 0) {
      CHECK(x.time_ms > v[i - 1].time_ms) << "sample " << i;
      // Absolute schedule: sample i is never taken before its slot (tick i of 1 ms) ...
      CHECK(x.time_ms - v[0].time_ms >= double(i) - 0.3) << "sample " << i << " early: " << x.time_ms - v[0].time_ms;
    }
  }
  // ... and does not drift: the span is the ticks taken plus skipped, plus the last sample's own
  // wake-up delay (generous: the scheduler decides it).
  const double span = v.back().time_ms - v.front().time_ms;
  CHECK(span <= double(v.size() - 1 + st.late_ticks) + 25.0) << "span " << span << " ms, " << v.size() << " samples, " << st.late_ticks << " late";

  // stop() again is a no-op; a drain after stop is empty.
  s.stop();
  v.clear();
  CHECK(s.drain(v) == 0);
  CHECK(s.stats().samples == st.samples);

  // Restart at 2 ms: fresh counters, values continue from the same NVML session.
  s.start(2);
  run_for(s, 20, 2);
  s.stop();
  s.drain(v);
  st = s.stats();
  CHECK(v.size() >= 2 && double(v.size() + st.late_ticks) <= st.wall_ms / 2 + 2) << v.size() << " in " << st.wall_ms << " ms";
  CHECK(st.samples == v.size());
  if (!v.empty()) {
    CHECK(v[0].gpu_util > 0) << "the mock's counter continues across runs";
  }
}

TEST(ring_buffer_drops_oldest) {
  nvml::Sampler s(0, "", 4);
  s.start(1);
  run_for(s, 30, 8);
  s.stop();
  std::vector<nvml::Sample> v;
  s.drain(v);
  nvml::SamplerStats st = s.stats();
  CHECK(v.size() == 4) << v.size();
  CHECK(st.samples >= 8) << st.samples;
  CHECK(st.drops == st.samples - 4) << st.drops << " of " << st.samples;
  // The newest four are kept, in order.
  for (size_t i = 1; i < v.size(); ++i) CHECK(v[i].gpu_util == v[i - 1].gpu_util + 1);
  if (!v.empty()) {
    CHECK(v.back().gpu_util == double((st.samples - 1) % 101)) << v.back().gpu_util;
  }
}

TEST(nvml_error_ends_the_run) {
  CHECK(mock_init_count() == 0);  // a fresh init: the mock's counters start at 0
  setenv("MOCK_NVML_FAIL_AFTER", "5", 1);
  nvml::Sampler s(0, "", 64);
  s.start(1);
  for (int i = 0; i < 5000 && s.running(); ++i) sleep_ms(1);
  unsetenv("MOCK_NVML_FAIL_AFTER");
  CHECK(!s.running()) << "the thread stops on an NVML error";
  nvml::SamplerStats st = s.stats();
  CHECK(st.samples == 5) << st.samples;
  CHECK(st.error == "nvmlDeviceGetUtilizationRates failed: GPU is lost (NVML error 15)") << st.error;
  std::vector<nvml::Sample> v;
  CHECK(s.drain(v) == 5);
  // A run after the failure starts cleanly (the mock now succeeds).
  s.start(1);
  run_for(s, 10, 1);
  s.stop();
  CHECK(s.stats().error.empty() && s.stats().samples > 0);
  expect_error([&] {
    setenv("MOCK_NVML_FAIL_AFTER", "0", 1);
    try {
      s.sample_now();
    } catch (...) {
      unsetenv("MOCK_NVML_FAIL_AFTER");
      throw;
    }
    unsetenv("MOCK_NVML_FAIL_AFTER");
  }, ErrorKind::Device, "nvmlDeviceGetUtilizationRates failed");
}

TEST_MAIN()
