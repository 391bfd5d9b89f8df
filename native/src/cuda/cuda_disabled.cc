// The CUDA backend when the addon was built without nvcc: no devices, every op unsupported.
#include "kintsugi/cuda.h"
#include "kintsugi/cuda_abft.h"
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

#define KINTSUGI_NO_CUDA(fn) throw Error(ErrorKind::Unsupported, #fn ": the addon was built without the CUDA backend")

bool cublas_available(std::string* why) {
  if (why) *why = "cublas_available: the addon was built without the CUDA backend";
  return false;
}

Properties properties(int) { KINTSUGI_NO_CUDA(properties); }
void set_device(int) { KINTSUGI_NO_CUDA(set_device); }
void synchronize_device(int) { KINTSUGI_NO_CUDA(synchronize_device); }
void memory_info(int, int64_t*, int64_t*) { KINTSUGI_NO_CUDA(memory_info); }
void* malloc_device(int, size_t) { KINTSUGI_NO_CUDA(malloc_device); }
void free_device(int, void*) { KINTSUGI_NO_CUDA(free_device); }
void* malloc_pinned(size_t) { KINTSUGI_NO_CUDA(malloc_pinned); }
void free_pinned(void*) { KINTSUGI_NO_CUDA(free_pinned); }
void copy_async(int, void*, const void*, size_t, CopyKind, Stream) { KINTSUGI_NO_CUDA(copy_async); }
void copy(int, void*, const void*, size_t, CopyKind) { KINTSUGI_NO_CUDA(copy); }
void memset_async(int, void*, int, size_t, Stream) { KINTSUGI_NO_CUDA(memset_async); }
Stream stream_create(int) { KINTSUGI_NO_CUDA(stream_create); }
void stream_destroy(int, Stream) { KINTSUGI_NO_CUDA(stream_destroy); }
void stream_synchronize(int, Stream) { KINTSUGI_NO_CUDA(stream_synchronize); }
Event event_create(int) { KINTSUGI_NO_CUDA(event_create); }
void event_destroy(int, Event) { KINTSUGI_NO_CUDA(event_destroy); }
void event_record(int, Event, Stream) { KINTSUGI_NO_CUDA(event_record); }
void event_synchronize(Event) { KINTSUGI_NO_CUDA(event_synchronize); }
bool event_query(Event) { KINTSUGI_NO_CUDA(event_query); }
float event_elapsed_ms(Event, Event) { KINTSUGI_NO_CUDA(event_elapsed_ms); }
void stream_wait_event(int, Stream, Event) { KINTSUGI_NO_CUDA(stream_wait_event); }
void check_launch(const char*) { KINTSUGI_NO_CUDA(check_launch); }
void convert(DType, const void*, DType, void*, int64_t, Stream) { KINTSUGI_NO_CUDA(convert); }
void gemm(int, const GemmArgs&, Stream) { KINTSUGI_NO_CUDA(gemm); }
void gemm_cublas(int, const GemmArgs&, Stream) { KINTSUGI_NO_CUDA(gemm_cublas); }
void conv2d_forward(int, DType, const Conv2dParams&, const void*, const void*, const void*, void*, Stream) {
  KINTSUGI_NO_CUDA(conv2d_forward);
}
void conv2d_backward_data(int, DType, const Conv2dParams&, const void*, const void*, void*, Stream) {
  KINTSUGI_NO_CUDA(conv2d_backward_data);
}
void conv2d_backward_weight(int, DType, const Conv2dParams&, const void*, const void*, void*, void*, Stream) {
  KINTSUGI_NO_CUDA(conv2d_backward_weight);
}
void row_sums(int, const float*, int64_t, int64_t, int64_t, double*, Stream) { KINTSUGI_NO_CUDA(row_sums); }
void col_sums(int, const float*, int64_t, int64_t, int64_t, double*, Stream) { KINTSUGI_NO_CUDA(col_sums); }
void xor_encode(int, const uint8_t* const*, int, size_t, uint8_t*, Stream) { KINTSUGI_NO_CUDA(xor_encode); }
void sum_encode(int, const float* const*, const float*, int, size_t, float*, Stream) { KINTSUGI_NO_CUDA(sum_encode); }
void sum_decode(int, const float*, const float* const*, const float*, int, float, size_t, float*, Stream) {
  KINTSUGI_NO_CUDA(sum_decode);
}
void embedding_bag_forward(int, const EmbeddingBagArgs&, const float*, float*, Stream) { KINTSUGI_NO_CUDA(embedding_bag_forward); }
void embedding_bag_backward(int, const EmbeddingBagArgs&, const float*, float, float*, Stream) {
  KINTSUGI_NO_CUDA(embedding_bag_backward);
}
void pairwise_dots_forward(int, const PairwiseDotsArgs&, const float*, float*, Stream) { KINTSUGI_NO_CUDA(pairwise_dots_forward); }
void pairwise_dots_backward(int, const PairwiseDotsArgs&, const float*, const float*, float*, Stream) {
  KINTSUGI_NO_CUDA(pairwise_dots_backward);
}

double abft_bound_factor(DType, int64_t, AbftScheme) { KINTSUGI_NO_CUDA(abft_bound_factor); }
void validate_gemm_checked(const GemmArgs&, const CudaAbftOptions&) { KINTSUGI_NO_CUDA(validate_gemm_checked); }
int64_t abft_workspace_bytes(const GemmArgs&, const CudaAbftOptions&) { KINTSUGI_NO_CUDA(abft_workspace_bytes); }
void gemm_checked_launch(int, const GemmArgs&, const CudaAbftOptions&, void*, Stream) { KINTSUGI_NO_CUDA(gemm_checked_launch); }
CudaAbftReport gemm_checked_finish(int, const GemmArgs&, const CudaAbftOptions&, void*, Stream) { KINTSUGI_NO_CUDA(gemm_checked_finish); }
CudaAbftReport gemm_checked(int, const GemmArgs&, const CudaAbftOptions&, Stream) { KINTSUGI_NO_CUDA(gemm_checked); }
void abft_weight_sums(int, DType, bool, int64_t, int64_t, const void*, int64_t, double*, Stream) { KINTSUGI_NO_CUDA(abft_weight_sums); }
void flip_bit(int, DType, void*, int64_t, int, Stream) { KINTSUGI_NO_CUDA(flip_bit); }

}  // namespace cuda
}  // namespace kintsugi
