#include "kintsugi/cpu.h"

#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#if !defined(KINTSUGI_NO_X86_KERNELS)
#include <cpuid.h>
#endif

namespace kintsugi {
namespace {

int64_t read_cache_size(int index, int64_t fallback) {
  // /sys reports what the hypervisor exposes; sysconf returns 0 on some VMs.
  std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size");
  std::string text;
  if (!(in >> text) || text.empty()) return fallback;
  int64_t value = std::atoll(text.c_str());
  char unit = text.back();
  if (unit == 'K') value *= 1024;
  if (unit == 'M') value *= 1024 * 1024;
  return value > 0 ? value : fallback;
}

int64_t cache_bytes(int level, bool data) {
  for (int index = 0; index < 8; ++index) {
    std::string base = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
    std::ifstream level_file(base + "level"), type_file(base + "type");
    int l = 0;
    std::string type;
    if (!(level_file >> l) || !(type_file >> type)) break;
    if (l != level) continue;
    if (data && type == "Instruction") continue;
    return read_cache_size(index, 0);
  }
  return 0;
}

CpuInfo detect() {
  CpuInfo info;
#if !defined(KINTSUGI_NO_X86_KERNELS)
  unsigned eax, ebx, ecx, edx;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  bool os_avx = false, os_avx512 = false;
  if (max_leaf >= 1) {
    __cpuid(1, eax, ebx, ecx, edx);
    bool osxsave = ecx & (1u << 27);
    info.fma = ecx & (1u << 12);
    info.f16c = ecx & (1u << 29);
    if (osxsave) {
      unsigned xcr0_lo, xcr0_hi;
      __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
      os_avx = (xcr0_lo & 0x6) == 0x6;             // XMM and YMM state
      os_avx512 = os_avx && (xcr0_lo & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
    }
  }
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    info.avx2 = os_avx && (ebx & (1u << 5));
    info.avx512f = os_avx512 && (ebx & (1u << 16));
    info.avx512dq = os_avx512 && (ebx & (1u << 17));
    info.avx512bw = os_avx512 && (ebx & (1u << 30));
    info.avx512vl = os_avx512 && (ebx & (1u << 31));
  }
  info.fma = info.fma && os_avx;
  unsigned brand[12] = {0};
  if (__get_cpuid_max(0x80000000, nullptr) >= 0x80000004) {
    for (unsigned i = 0; i < 3; ++i) __cpuid(0x80000002 + i, brand[4 * i], brand[4 * i + 1], brand[4 * i + 2], brand[4 * i + 3]);
    char text[49] = {0};
    std::memcpy(text, brand, 48);
    info.brand = text;
    while (!info.brand.empty() && info.brand.back() == ' ') info.brand.pop_back();
    while (!info.brand.empty() && info.brand.front() == ' ') info.brand.erase(0, 1);
  }
#endif
  if (info.brand.empty()) info.brand = "unknown CPU";
  if (int64_t v = cache_bytes(1, true)) info.l1d_bytes = v;
  if (int64_t v = cache_bytes(2, true)) info.l2_bytes = v;
  if (int64_t v = cache_bytes(3, true)) info.l3_bytes = v;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    info.logical_cores = CPU_COUNT(&set);
  } else {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    info.logical_cores = n > 0 ? int(n) : 1;
  }
  if (info.logical_cores < 1) info.logical_cores = 1;
  return info;
}

Isa parse_isa_env() {
  const char* env = std::getenv("KINTSUGI_ISA");
  if (!env) return Isa::Avx512;
  if (std::strcmp(env, "portable") == 0) return Isa::Portable;
  if (std::strcmp(env, "avx2") == 0) return Isa::Avx2;
  return Isa::Avx512;
}

std::atomic<int>& isa_limit() {
  static std::atomic<int> limit{int(parse_isa_env())};
  return limit;
}

}  // namespace

const CpuInfo& cpu_info() {
  static const CpuInfo info = detect();
  return info;
}

Isa best_isa() {
  const CpuInfo& c = cpu_info();
  if (c.avx512f && c.avx512bw && c.avx512dq && c.avx512vl && c.fma) return Isa::Avx512;
  if (c.avx2 && c.fma) return Isa::Avx2;
  return Isa::Portable;
}

Isa active_isa() {
  int best = int(best_isa());
  int limit = isa_limit().load(std::memory_order_relaxed);
  return Isa(best < limit ? best : limit);
}

void set_isa_limit(Isa limit) { isa_limit().store(int(limit), std::memory_order_relaxed); }

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "portable";
  }
}

}  // namespace kintsugi
