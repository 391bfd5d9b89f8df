// AVX2 + FMA build of the generic check helpers (abft_generic.h): the same code as the portable
// table, vectorised 256 bits wide by the compiler. One extern entry returns the table.
#include "abft_generic.h"

namespace kintsugi {
namespace gemm_internal {

const AbftKernels* abft_avx2_kernels() {
  static const AbftKernels kSet = generic_abft_kernels("abft_avx2");
  return &kSet;
}

}  // namespace gemm_internal
}  // namespace kintsugi
