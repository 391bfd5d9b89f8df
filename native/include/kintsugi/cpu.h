// What the CPU can do, detected at run time, so one binary runs on any x86-64 and uses the best
// instruction set present.
#pragma once
#include <cstdint>
#include <string>

namespace kintsugi {

enum class Isa { Portable = 0, Avx2 = 1, Avx512 = 2 };

struct CpuInfo {
  std::string brand;
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  int64_t l1d_bytes = 32 * 1024, l2_bytes = 1024 * 1024, l3_bytes = 8 * 1024 * 1024;
  int logical_cores = 1;  // usable by this process (affinity mask)
};

const CpuInfo& cpu_info();

// Best ISA this CPU supports.
Isa best_isa();
// ISA the kernels use now: best_isa() unless limited by KINTSUGI_ISA=portable|avx2|avx512 or
// set_isa_limit() (tests use it to exercise every path on one machine).
Isa active_isa();
void set_isa_limit(Isa limit);
const char* isa_name(Isa isa);

}  // namespace kintsugi
