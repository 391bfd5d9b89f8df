// The CUDA backend's binding: device buffers, pinned host memory, streams and events as handles,
// and the kernels' launchers. Kernel launches are asynchronous on a stream, so they run inline
// (the JS thread only enqueues); anything that waits for the device (copies to pageable memory,
// stream and event synchronisation, ops that need scratch memory) returns a Promise and waits on
// a runner thread (call.cc). Every buffer argument is bounds-checked here against what the kernel will touch.
#include <napi.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "args.h"
#include "call.h"
#include "kintsugi/conv.h"
#include "kintsugi/cuda.h"
#include "kintsugi/cuda_abft.h"
#include "kintsugi/device.h"
#include "kintsugi/embedding.h"

namespace kintsugi::binding {

namespace {

// Type tags tell our handles apart without keeping constructors per environment.
const napi_type_tag kBufferTag = {0x6b696e7473756769ull, 0x6375646162756631ull};
const napi_type_tag kStreamTag = {0x6b696e7473756769ull, 0x6375646173747231ull};
const napi_type_tag kEventTag = {0x6b696e7473756769ull, 0x6375646165767431ull};

// Device memory owned by shared pointers, so an in-flight async call keeps it alive across dispose().
// cudaFree waits until the whole device is idle, so freeing on the JS thread would block it
// behind every queued kernel (dispose() and garbage collection both free). Frees go to one
// background thread instead; an allocation that runs out of memory waits for pending frees and
// tries once more. The object is never destroyed: its thread lives until the process exits.
class DeferredFree {
 public:
  static DeferredFree& instance() {
    static DeferredFree* d = new DeferredFree();
    return *d;
  }
  void push(int device, void* ptr) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back({device, ptr});
    }
    wake_.notify_all();
  }
  // Returns once every free queued so far has been done.
  void drain() {
    std::unique_lock<std::mutex> lock(mutex_);
    idle_.wait(lock, [&] { return queue_.empty() && !busy_; });
  }

 private:
  DeferredFree() { std::thread([this] { run(); }).detach(); }
  void run() {
    for (;;) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return !queue_.empty(); });
      auto [device, ptr] = queue_.front();
      queue_.pop_front();
      busy_ = true;
      lock.unlock();
      try {
        cuda::free_device(device, ptr);
      } catch (...) {  // a failed free must not end the thread (the memory is then lost)
      }
      lock.lock();
      busy_ = false;
      if (queue_.empty()) idle_.notify_all();
    }
  }
  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::deque<std::pair<int, void*>> queue_;
  bool busy_ = false;
};

void* allocate(int device, size_t bytes) {
  try {
    return cuda::malloc_device(device, bytes);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::OutOfMemory) throw;
    DeferredFree::instance().drain();
    return cuda::malloc_device(device, bytes);
  }
}

struct DeviceMemory {
  int device;
  void* ptr;
  size_t bytes;
  DeviceMemory(int d, size_t n) : device(d), ptr(allocate(d, n)), bytes(n) {}
  ~DeviceMemory() { DeferredFree::instance().push(device, ptr); }
};

struct StreamHandle {
  int device;
  cuda::Stream stream;
  StreamHandle(int d) : device(d), stream(cuda::stream_create(d)) {}
  ~StreamHandle() {
    try {
      cuda::stream_destroy(device, stream);
    } catch (...) {
    }
  }
};

struct EventHandle {
  int device;
  cuda::Event event;
  EventHandle(int d) : device(d), event(cuda::event_create(d)) {}
  ~EventHandle() {
    try {
      cuda::event_destroy(device, event);
    } catch (...) {
    }
  }
};

int read_device(const Args& a, size_t i) { return int(a.integer(i, "device", 0, 1023)); }

// A JS handle class wrapping shared_ptr<T>, with dispose() and `disposed`.
template <typename Self, typename T> class Handle : public Napi::ObjectWrap<Self> {
 public:
  explicit Handle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Self>(info) {}
  // dispose() and `disposed`, plus the class's own members.
  static Napi::Function DefineWith(Napi::Env env, const char* name, std::vector<typename Napi::ObjectWrap<Self>::PropertyDescriptor> props) {
    props.push_back(Napi::ObjectWrap<Self>::InstanceMethod("dispose", static_cast<Napi::Value (Self::*)(const Napi::CallbackInfo&)>(&Handle::Dispose)));
    props.push_back(Napi::ObjectWrap<Self>::InstanceAccessor("disposed", static_cast<Napi::Value (Self::*)(const Napi::CallbackInfo&)>(&Handle::Disposed), nullptr));
    return Napi::ObjectWrap<Self>::DefineClass(env, name, props);
  }
  std::shared_ptr<T> get(const std::string& name, const char* kind) const {
    if (!value_) throw_expected(ErrorKind::Type, std::string("a live ") + kind, name, std::string("a disposed ") + kind);
    return value_;
  }

 protected:
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    value_.reset();
    return info.Env().Undefined();
  }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !value_); }
  std::shared_ptr<T> value_;
};

template <typename H> H* unwrap(const Napi::Value& v, const napi_type_tag& tag, const std::string& name, const char* kind) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&tag)) throw_expected(ErrorKind::Type, std::string("a ") + kind, name, describe(v));
  return H::Unwrap(v.As<Napi::Object>());
}

class BufferHandle : public Handle<BufferHandle, DeviceMemory> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineWith(env, "CudaBuffer", {InstanceAccessor<&BufferHandle::Bytes>("bytes"), InstanceAccessor<&BufferHandle::Device>("device")});
  }
  // new CudaBuffer(device, bytes)
  explicit BufferHandle(const Napi::CallbackInfo& info) : Handle(info) {
    guard(info.Env(), [&] {
      Args a(info);
      int device = read_device(a, 0);
      int64_t bytes = a.integer(1, "bytes", 0, int64_t(1) << 46);
      value_ = std::make_shared<DeviceMemory>(device, size_t(bytes));
      device_ = device;
      bytes_ = bytes;
      info.This().As<Napi::Object>().TypeTag(&kBufferTag);
      return info.Env().Undefined();
    });
  }

 private:
  Napi::Value Bytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(bytes_)); }
  Napi::Value Device(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), device_); }
  int device_ = 0;
  int64_t bytes_ = 0;
};

class StreamWrap : public Handle<StreamWrap, StreamHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineWith(env, "CudaStream", {InstanceMethod<&StreamWrap::Synchronize>("synchronize")});
  }
  explicit StreamWrap(const Napi::CallbackInfo& info) : Handle(info) {
    guard(info.Env(), [&] {
      value_ = std::make_shared<StreamHandle>(read_device(Args(info), 0));
      info.This().As<Napi::Object>().TypeTag(&kStreamTag);
      return info.Env().Undefined();
    });
  }

 private:
  // synchronize() -> Promise, resolved when the stream's work is done.
  Napi::Value Synchronize(const Napi::CallbackInfo& info) {
    return run_call(info, true, [&] {
      auto s = get("stream", "CudaStream");
      return Job{[s] { cuda::stream_synchronize(s->device, s->stream); }, info.Env().Undefined(), {}};
    });
  }
};

class EventWrap : public Handle<EventWrap, EventHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineWith(env, "CudaEvent",
                      {InstanceMethod<&EventWrap::Record>("record"), InstanceMethod<&EventWrap::Query>("query"),
                        InstanceMethod<&EventWrap::Synchronize>("synchronize"), InstanceMethod<&EventWrap::ElapsedMs>("elapsedMs")});
  }
  explicit EventWrap(const Napi::CallbackInfo& info) : Handle(info) {
    guard(info.Env(), [&] {
      value_ = std::make_shared<EventHandle>(read_device(Args(info), 0));
      info.This().As<Napi::Object>().TypeTag(&kEventTag);
      return info.Env().Undefined();
    });
  }

 private:
  Napi::Value Record(const Napi::CallbackInfo& info);
  Napi::Value Query(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&] { return Napi::Boolean::New(info.Env(), cuda::event_query(get("event", "CudaEvent")->event)); });
  }
  Napi::Value Synchronize(const Napi::CallbackInfo& info) {
    return run_call(info, true, [&] {
      auto e = get("event", "CudaEvent");
      return Job{[e] { cuda::event_synchronize(e->event); }, info.Env().Undefined(), {}};
    });
  }
  // elapsedMs(endEvent): milliseconds from this event to `end` (both recorded and completed).
  Napi::Value ElapsedMs(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&] {
      auto end = unwrap<EventWrap>(info[0], kEventTag, "end", "CudaEvent")->get("end", "CudaEvent");
      return Napi::Number::New(info.Env(), cuda::event_elapsed_ms(get("event", "CudaEvent")->event, end->event));
    });
  }
};

// A stream argument: null/undefined is the device's default stream.
std::shared_ptr<StreamHandle> read_stream(const Args& a, size_t i, int device) {
  Napi::Value v = a.value(i);
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  auto s = unwrap<StreamWrap>(v, kStreamTag, "stream", "CudaStream")->get("stream", "CudaStream");
  if (s->device != device) throw_expected(ErrorKind::Range, "a stream of CUDA device " + std::to_string(device), "stream", "a stream of device " + std::to_string(s->device));
  return s;
}
cuda::Stream raw(const std::shared_ptr<StreamHandle>& s) { return s ? s->stream : nullptr; }

Napi::Value EventWrap::Record(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    auto e = get("event", "CudaEvent");
    auto s = read_stream(Args(info), 0, e->device);
    cuda::event_record(e->device, e->event, raw(s));
    return info.Env().Undefined();
  });
}

// A region of a device buffer: (buffer, byteOffset) plus the bytes the kernel will touch.
struct Region {
  std::shared_ptr<DeviceMemory> mem;
  void* ptr = nullptr;
  int64_t bytes = 0;  // what the kernel touches from ptr
};

// Throws when an output shares bytes with an input: other threads still read the input while the
// output is written, so aliasing gives silently wrong answers (the CPU binding rejects it too).
void check_disjoint(const Region& out, const char* out_name, const Region& in, const char* in_name) {
  if (!out.mem || out.mem != in.mem || out.bytes == 0 || in.bytes == 0) return;
  const uintptr_t a0 = reinterpret_cast<uintptr_t>(out.ptr), b0 = reinterpret_cast<uintptr_t>(in.ptr);
  if (a0 < b0 + uintptr_t(in.bytes) && b0 < a0 + uintptr_t(out.bytes))
    throw_expected(ErrorKind::Range, std::string("memory not shared with ") + in_name, out_name, "an overlapping region of the same buffer");
}

Region read_region(const Args& a, size_t i, const char* name, int device, int64_t need_bytes, size_t align, bool nullable = false) {
  Napi::Value v = a.value(i);
  if (nullable && (v.IsNull() || v.IsUndefined())) return {};
  auto mem = unwrap<BufferHandle>(v, kBufferTag, name, "CudaBuffer")->get(name, "CudaBuffer");
  if (mem->device != device)
    throw_expected(ErrorKind::Range, "a buffer on CUDA device " + std::to_string(device), name, "a buffer on device " + std::to_string(mem->device));
  int64_t offset = a.integer(i + 1, (std::string(name) + "Offset").c_str(), 0, int64_t(1) << 46);
  if (size_t(offset) % align)
    throw_expected(ErrorKind::Range, "a byte offset that is a multiple of " + std::to_string(align), std::string(name) + "Offset", std::to_string(offset));
  if (offset + need_bytes > int64_t(mem->bytes))
    throw_expected(ErrorKind::Range, std::to_string(offset + need_bytes) + " bytes (offset " + std::to_string(offset) + " + " + std::to_string(need_bytes) + ")", name,
                   "a buffer of " + std::to_string(mem->bytes) + " bytes");
  Region r;
  r.ptr = static_cast<uint8_t*>(mem->ptr) + offset;
  r.bytes = need_bytes;
  r.mem = std::move(mem);
  return r;
}

cuda::DType read_dtype(const Args& a, size_t i, const char* name) {
  std::string t = a.choice(i, name, {"float32", "float16", "bfloat16"});
  return t == "float32" ? cuda::DType::F32 : t == "float16" ? cuda::DType::F16 : cuda::DType::BF16;
}

// No buffer exceeds this (CudaBuffer's limit), so larger extents are rejected before they are
// multiplied out: sizes and leading dimensions below 2^31 each can overflow int64 in bytes, and a
// wrapped (negative or small) extent would pass the bounds check in read_region.
constexpr int64_t kMaxBufferBytes = int64_t(1) << 46;

// Bytes a row-major stored matrix of rows x cols with leading dimension ld spans.
int64_t matrix_bytes(int64_t rows, int64_t cols, int64_t ld, size_t elem, const char* name) {
  if (rows == 0 || cols == 0) return 0;
  if ((double(rows - 1) * double(ld) + double(cols)) * double(elem) > double(kMaxBufferBytes))
    throw_expected(ErrorKind::Range, "a matrix of at most 2^46 bytes", name,
                   std::to_string(rows) + " x " + std::to_string(cols) + " with leading dimension " + std::to_string(ld));
  return ((rows - 1) * ld + cols) * int64_t(elem);
}

// Bytes of a x b elements, checked like matrix_bytes.
int64_t product_bytes(int64_t a, int64_t b, size_t elem, const char* name) {
  if (double(a) * double(b) * double(elem) > double(kMaxBufferBytes))
    throw_expected(ErrorKind::Range, "at most 2^46 bytes", name, std::to_string(a) + " x " + std::to_string(b) + " elements");
  return a * b * int64_t(elem);
}

// ---- Devices ----
Napi::Value Properties(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    cuda::Properties p = cuda::properties(read_device(Args(info), 0));
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("name", p.name);
    o.Set("computeCapability", std::to_string(p.major) + "." + std::to_string(p.minor));
    o.Set("major", p.major);
    o.Set("minor", p.minor);
    o.Set("multiprocessors", p.multiprocessors);
    o.Set("smClockKHz", p.sm_clock_khz);
    o.Set("memoryClockKHz", p.memory_clock_khz);
    o.Set("memoryBusWidth", p.memory_bus_width);
    o.Set("totalMemory", double(p.total_memory));
    o.Set("l2CacheBytes", double(p.l2_cache_bytes));
    o.Set("sharedMemoryPerBlockOptin", double(p.shared_memory_per_block_optin));
    o.Set("maxThreadsPerMultiprocessor", p.max_threads_per_multiprocessor);
    o.Set("warpSize", p.warp_size);
    o.Set("pciBusId", p.pci_bus_id);
    o.Set("uuid", p.uuid);
    return o;
  });
}

Napi::Value MemoryInfo(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    int64_t f = 0, t = 0;
    cuda::memory_info(read_device(Args(info), 0), &f, &t);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("free", double(f));
    o.Set("total", double(t));
    return o;
  });
}

// cudaPinned(bytes) -> ArrayBuffer in page-locked host memory, freed when collected.
Napi::Value Pinned(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    int64_t bytes = Args(info).integer(0, "bytes", 1, int64_t(1) << 40);
    void* p = cuda::malloc_pinned(size_t(bytes));
    return Napi::ArrayBuffer::New(info.Env(), p, size_t(bytes), [](Napi::Env, void* data) {
      try {
        cuda::free_pinned(data);
      } catch (...) {
      }
    });
  });
}

// ---- Copies ----
// cudaUpload(async, device, stream|null, dst, dstOffset, src: TypedArray) : async waits for the
// copy on the pool; sync only enqueues (the caller keeps `src` alive and unchanged until the
// stream is synchronised: meant for pinned memory).
template <bool Upload> Napi::Value Copy(const Napi::CallbackInfo& info) {
  return run_call(info, read_async(info), [&] {
    Args a(info, 1);
    int device = read_device(a, 0);
    auto stream = read_stream(a, 1, device);
    Napi::Value hv = a.value(4);
    if (!hv.IsTypedArray()) throw_expected(ErrorKind::Type, "a typed array", Upload ? "src" : "dst", describe(hv));
    auto typed = hv.As<Napi::TypedArray>();
    if (typed.ArrayBuffer().IsDetached()) throw_expected(ErrorKind::Type, "a typed array with an attached buffer", Upload ? "src" : "dst", "a detached buffer");
    size_t bytes = typed.ByteLength();
    uint8_t* host = static_cast<uint8_t*>(typed.ArrayBuffer().Data()) + typed.ByteOffset();
    Region dev = read_region(a, 2, Upload ? "dst" : "src", device, int64_t(bytes), 1);
    bool async = read_async(info);
    void* d = dev.ptr;
    auto mem = dev.mem;
    // `stream` (the shared handle, not just the raw cudaStream_t) is captured so that dispose() of
    // the CudaStream while the Promise is pending cannot destroy the stream under the copy.
    return Job{[=] {
                 (void)mem;
                 cuda::Stream s = raw(stream);
                 if (Upload)
                   cuda::copy_async(device, d, host, bytes, cuda::CopyKind::HostToDevice, s);
                 else
                   cuda::copy_async(device, host, d, bytes, cuda::CopyKind::DeviceToHost, s);
                 if (async) cuda::stream_synchronize(device, s);
               },
               hv, {hv}};
  });
}

// cudaCopyDevice(device, stream|null, dst, dstOffset, src, srcOffset, bytes): device to device, enqueued.
Napi::Value CopyDevice(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    Args a(info);
    int device = read_device(a, 0);
    auto stream = read_stream(a, 1, device);
    int64_t bytes = a.integer(6, "bytes", 0, int64_t(1) << 46);
    Region dst = read_region(a, 2, "dst", device, bytes, 1), src = read_region(a, 4, "src", device, bytes, 1);
    cuda::copy_async(device, dst.ptr, src.ptr, size_t(bytes), cuda::CopyKind::DeviceToDevice, raw(stream));
    return info.Env().Undefined();
  });
}

// cudaMemset(device, stream|null, dst, dstOffset, value, bytes)
Napi::Value Memset(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    Args a(info);
    int device = read_device(a, 0);
    auto stream = read_stream(a, 1, device);
    int value = int(a.integer(4, "value", 0, 255));
    int64_t bytes = a.integer(5, "bytes", 0, int64_t(1) << 46);
    Region dst = read_region(a, 2, "dst", device, bytes, 1);
    cuda::memset_async(device, dst.ptr, value, size_t(bytes), raw(stream));
    return info.Env().Undefined();
  });
}

// cudaConvert(device, stream|null, fromType, src, srcOffset, toType, dst, dstOffset, count)
Napi::Value Convert(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    Args a(info);
    int device = read_device(a, 0);
    auto stream = read_stream(a, 1, device);
    cuda::DType from = read_dtype(a, 2, "fromType"), to = read_dtype(a, 5, "toType");
    int64_t count = a.integer(8, "count", 0, int64_t(1) << 44);
    Region src = read_region(a, 3, "src", device, count * cuda::dtype_size(from), cuda::dtype_size(from));
    Region dst = read_region(a, 6, "dst", device, count * cuda::dtype_size(to), cuda::dtype_size(to));
    // cuda::convert takes no device: launch on `device` (and its default stream for null), not on
    // whatever device this thread last used.
    cuda::set_device(device);
    cuda::convert(from, src.ptr, to, dst.ptr, count, raw(stream));
    return info.Env().Undefined();
  });
}

// ---- GEMM ----
// cudaGemm(device, stream|null, backend, transA, transB, m, n, k, alpha, a, aOffset, lda, b, bOffset,
//          ldb, beta, c, cOffset, ldc, abType, cType, tf32)
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    Args a(info);
    int device = read_device(a, 0);
    auto stream = read_stream(a, 1, device);
    bool cublas = a.choice(2, "backend", {"kintsugi", "cublas"}) == "cublas";
    cuda::GemmArgs g;
    g.trans_a = a.boolean(3, "transA");
    g.trans_b = a.boolean(4, "transB");
    g.m = a.integer(5, "m", 0, kMaxDim);
    g.n = a.integer(6, "n", 0, kMaxDim);
    g.k = a.integer(7, "k", 0, kMaxDim);
    g.alpha = float(a.number(8, "alpha"));
    g.lda = a.integer(11, "lda", 1, kMaxDim);
    g.ldb = a.integer(14, "ldb", 1, kMaxDim);
    g.beta = float(a.number(15, "beta"));
    g.ldc = a.integer(18, "ldc", 1, kMaxDim);
    g.ab = read_dtype(a, 19, "abType");
    g.c_type = read_dtype(a, 20, "cType");
    g.tf32 = a.boolean(21, "tf32");
    size_t ab = cuda::dtype_size(g.ab), cb = cuda::dtype_size(g.c_type);
    // Stored extents: op(A) is m x k, so A is k x m when transposed.
    int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
    int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
    if (g.lda < a_cols) throw_expected(ErrorKind::Range, "lda >= " + std::to_string(a_cols), "lda", std::to_string(g.lda));
    if (g.ldb < b_cols) throw_expected(ErrorKind::Range, "ldb >= " + std::to_string(b_cols), "ldb", std::to_string(g.ldb));
    if (g.ldc < g.n) throw_expected(ErrorKind::Range, "ldc >= " + std::to_string(g.n), "ldc", std::to_string(g.ldc));
    Region A = read_region(a, 9, "a", device, matrix_bytes(a_rows, a_cols, g.lda, ab, "a"), ab);
    Region B = read_region(a, 12, "b", device, matrix_bytes(b_rows, b_cols, g.ldb, ab, "b"), ab);
    Region C = read_region(a, 16, "c", device, matrix_bytes(g.m, g.n, g.ldc, cb, "c"), cb);
    check_disjoint(C, "c", A, "a");
    check_disjoint(C, "c", B, "b");
    g.a = A.ptr;
    g.b = B.ptr;
    g.c = C.ptr;
    if (cublas)
      cuda::gemm_cublas(device, g, raw(stream));
    else
      cuda::gemm(device, g, raw(stream));
    return info.Env().Undefined();
  });
}

Napi::Value CublasStatus(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    std::string why;
    bool ok = cuda::cublas_available(&why);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("available", ok);
    o.Set(ok ? "library" : "reason", why);
    return o;
  });
}

// ---- conv2d ----
enum class ConvPass { Forward, BackwardData, BackwardWeight };
// cudaConv2d(pass, device, stream|null, dtype, params, in0, in0Offset, in1, in1Offset, out0, out0Offset, out1|null, out1Offset)
//   forward: x, w -> y (out1 = bias input, read);  backwardData: dy, w -> dx;  backwardWeight: x, dy -> dw (out1 = db)
Napi::Value Conv2d(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    Args a(info);
    std::string pass_name = a.choice(0, "pass", {"forward", "backwardData", "backwardWeight"});
    ConvPass pass = pass_name == "forward" ? ConvPass::Forward : pass_name == "backwardData" ? ConvPass::BackwardData : ConvPass::BackwardWeight;
    int device = read_device(a, 1);
    auto stream = read_stream(a, 2, device);
    cuda::DType t = read_dtype(a, 3, "dtype");
    Conv2dParams p = read_conv_params(a, 4);
    if (p.layout != ConvLayout::Nchw)
      throw_expected(ErrorKind::Range, "'nchw' (the CUDA convolution takes NCHW only)", "params.layout", "'nhwc'");
    size_t e = cuda::dtype_size(t);
    int64_t x = p.input_size() * e, w = p.weight_size() * e, y = p.output_size() * e, bias = p.c_out * e;
    switch (pass) {
      case ConvPass::Forward: {
        Region X = read_region(a, 5, "x", device, x, e), W = read_region(a, 7, "w", device, w, e), Y = read_region(a, 9, "y", device, y, e);
        Region Bias = read_region(a, 11, "bias", device, bias, e, true);
        check_disjoint(Y, "y", X, "x");
        check_disjoint(Y, "y", W, "w");
        check_disjoint(Y, "y", Bias, "bias");
        cuda::conv2d_forward(device, t, p, X.ptr, W.ptr, Bias.ptr, Y.ptr, raw(stream));
        break;
      }
      case ConvPass::BackwardData: {
        Region DY = read_region(a, 5, "dy", device, y, e), W = read_region(a, 7, "w", device, w, e), DX = read_region(a, 9, "dx", device, x, e);
        check_disjoint(DX, "dx", DY, "dy");
        check_disjoint(DX, "dx", W, "w");
        cuda::conv2d_backward_data(device, t, p, DY.ptr, W.ptr, DX.ptr, raw(stream));
        break;
      }
      case ConvPass::BackwardWeight: {
        Region X = read_region(a, 5, "x", device, x, e), DY = read_region(a, 7, "dy", device, y, e), DW = read_region(a, 9, "dw", device, w, e);
        Region DB = read_region(a, 11, "db", device, bias, e, true);
        check_disjoint(DW, "dw", X, "x");
        check_disjoint(DW, "dw", DY, "dy");
        check_disjoint(DB, "db", X, "x");
        check_disjoint(DB, "db", DY, "dy");
        check_disjoint(DB, "db", DW, "dw");
        cuda::conv2d_backward_weight(device, t, p, X.ptr, DY.ptr, DW.ptr, DB.ptr, raw(stream));
        break;
      }
    }
    return info.Env().Undefined();
  });
}

// ---- Checksums: cudaChecksum(axis, device, stream|null, a, aOffset, m, n, ld, out, outOffset) ----
Napi::Value Checksum(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    Args a(info);
    bool rows = a.choice(0, "axis", {"rows", "cols"}) == "rows";
    int device = read_device(a, 1);
    auto stream = read_stream(a, 2, device);
    int64_t m = a.integer(5, "m", 0, kMaxDim), n = a.integer(6, "n", 0, kMaxDim), ld = a.integer(7, "ld", 1, kMaxDim);
    if (ld < n) throw_expected(ErrorKind::Range, "ld >= " + std::to_string(n), "ld", std::to_string(ld));
    Region A = read_region(a, 3, "a", device, matrix_bytes(m, n, ld, 4, "a"), 4);
    Region O = read_region(a, 8, "out", device, (rows ? m : n) * 8, 8);
    check_disjoint(O, "out", A, "a");
    if (rows)
      cuda::row_sums(device, static_cast<const float*>(A.ptr), m, n, ld, static_cast<double*>(O.ptr), raw(stream));
    else
      cuda::col_sums(device, static_cast<const float*>(A.ptr), m, n, ld, static_cast<double*>(O.ptr), raw(stream));
    return info.Env().Undefined();
  });
}

// Uploads a small host array to fresh device memory (the kernels take device arrays of pointers,
// coefficients and indices). Pageable copies return once the source is consumed.
template <typename T> std::shared_ptr<DeviceMemory> upload_small(int device, const std::vector<T>& host, cuda::Stream s) {
  auto mem = std::make_shared<DeviceMemory>(device, host.size() * sizeof(T));
  cuda::copy_async(device, mem->ptr, host.data(), host.size() * sizeof(T), cuda::CopyKind::HostToDevice, s);
  return mem;
}

// Regions of a list [buffer, offset, buffer, offset, ...] each spanning `bytes`.
std::vector<Region> read_region_list(const Args& a, size_t i, const char* name, int device, int64_t bytes, size_t align, size_t min_count) {
  Napi::Value v = a.value(i);
  if (!v.IsArray()) throw_expected(ErrorKind::Type, "an array of [CudaBuffer, byteOffset] pairs", name, describe(v));
  auto list = v.As<Napi::Array>();
  if (list.Length() % 2 || list.Length() / 2 < min_count || list.Length() / 2 > 4096)
    throw_expected(ErrorKind::Range, "between " + std::to_string(min_count) + " and 4096 blocks", name, std::to_string(list.Length() / 2) + " blocks");
  std::vector<Napi::Value> flat;
  for (uint32_t j = 0; j < list.Length(); ++j) flat.push_back(list.Get(j));
  std::vector<Region> out;
  for (uint32_t j = 0; j < list.Length(); j += 2) {
    std::string element = std::string(name) + "[" + std::to_string(j / 2) + "]";
    Napi::Value buf = flat[j];
    auto mem = unwrap<BufferHandle>(buf, kBufferTag, element, "CudaBuffer")->get(element, "CudaBuffer");
    if (mem->device != device) throw_expected(ErrorKind::Range, "a buffer on CUDA device " + std::to_string(device), element, "a buffer on another device");
    if (!flat[j + 1].IsNumber()) throw_expected(ErrorKind::Type, "a byte offset", element + " offset", describe(flat[j + 1]));
    double off = flat[j + 1].As<Napi::Number>().DoubleValue();
    if (!(off >= 0) || off != double(int64_t(off)) || int64_t(off) % int64_t(align) || int64_t(off) + bytes > int64_t(mem->bytes))
      throw_expected(ErrorKind::Range, "a byte offset with " + std::to_string(bytes) + " bytes inside the buffer, a multiple of " + std::to_string(align),
                     element + " offset", std::to_string(off) + " in a buffer of " + std::to_string(mem->bytes) + " bytes");
    Region r;
    r.ptr = static_cast<uint8_t*>(mem->ptr) + int64_t(off);
    r.bytes = bytes;
    r.mem = std::move(mem);
    out.push_back(std::move(r));
  }
  return out;
}

// ---- Parity: resolves when done (the pointer tables live in device memory for the call) ----
// cudaXorEncode(device, stream|null, blocks, len, parity, parityOffset)
Napi::Value XorEncode(const Napi::CallbackInfo& info) {
  return run_call(info, true, [&] {
    Args a(info);
    int device = read_device(a, 0);
    auto stream = read_stream(a, 1, device);
    int64_t len = a.integer(3, "len", 0, int64_t(1) << 44);
    auto blocks = read_region_list(a, 2, "blocks", device, len, 1, 1);
    Region P = read_region(a, 4, "parity", device, len, 1);
    std::vector<const uint8_t*> ptrs;
    for (auto& r : blocks) {
      check_disjoint(P, "parity", r, "blocks");
      ptrs.push_back(static_cast<const uint8_t*>(r.ptr));
    }
    return Job{[=] {
                 cuda::Stream s = raw(stream);
                 auto table = upload_small(device, ptrs, s);
                 cuda::xor_encode(device, static_cast<const uint8_t* const*>(table->ptr), int(ptrs.size()), size_t(len), static_cast<uint8_t*>(P.ptr), s);
                 cuda::stream_synchronize(device, s);
                 (void)blocks;
               },
               info.Env().Undefined(), {}};
  });
}

// cudaSumEncode(device, stream|null, blocks, coeffs: Float32Array|null, len (floats), parity, parityOffset)
// cudaSumDecode(device, stream|null, available, coeffs|null, missingCoeff, len, parity, parityOffset, out, outOffset)
Napi::Value SumEncode(const Napi::CallbackInfo& info) {
  return run_call(info, true, [&] {
    Args a(info);
    int device = read_device(a, 0);
    auto stream = read_stream(a, 1, device);
    int64_t len = a.integer(4, "len", 0, int64_t(1) << 42);
    auto blocks = read_region_list(a, 2, "blocks", device, len * 4, 4, 1);
    auto C = a.array<float>(3, "coeffs", true);
    if (C.present() && C.length != int64_t(blocks.size()))
      throw_expected(ErrorKind::Range, std::to_string(blocks.size()) + " coefficients (one per block)", "coeffs", std::to_string(C.length));
    Region P = read_region(a, 5, "parity", device, len * 4, 4);
    std::vector<const float*> ptrs;
    for (auto& r : blocks) {
      check_disjoint(P, "parity", r, "blocks");
      ptrs.push_back(static_cast<const float*>(r.ptr));
    }
    std::vector<float> coeffs = C.present() ? std::vector<float>(C.data, C.data + C.length) : std::vector<float>();
    return Job{[=] {
                 cuda::Stream s = raw(stream);
                 auto table = upload_small(device, ptrs, s);
                 auto cs = coeffs.empty() ? nullptr : upload_small(device, coeffs, s);
                 cuda::sum_encode(device, static_cast<const float* const*>(table->ptr), cs ? static_cast<const float*>(cs->ptr) : nullptr, int(ptrs.size()),
                                  size_t(len), static_cast<float*>(P.ptr), s);
                 cuda::stream_synchronize(device, s);
                 (void)blocks;
               },
               info.Env().Undefined(), {}};
  });
}

Napi::Value SumDecode(const Napi::CallbackInfo& info) {
  return run_call(info, true, [&] {
    Args a(info);
    int device = read_device(a, 0);
    auto stream = read_stream(a, 1, device);
    int64_t len = a.integer(5, "len", 0, int64_t(1) << 42);
    auto avail = read_region_list(a, 2, "available", device, len * 4, 4, 0);
    auto C = a.array<float>(3, "coeffs", true);
    if (C.present() && C.length != int64_t(avail.size()))
      throw_expected(ErrorKind::Range, std::to_string(avail.size()) + " coefficients (one per available block)", "coeffs", std::to_string(C.length));
    float missing = float(a.number(4, "missingCoeff"));
    if (missing == 0.0f) throw_expected(ErrorKind::Range, "a nonzero coefficient", "missingCoeff", "0");
    Region P = read_region(a, 6, "parity", device, len * 4, 4), O = read_region(a, 8, "out", device, len * 4, 4);
    check_disjoint(O, "out", P, "parity");
    std::vector<const float*> ptrs;
    for (auto& r : avail) {
      check_disjoint(O, "out", r, "available");
      ptrs.push_back(static_cast<const float*>(r.ptr));
    }
    std::vector<float> coeffs = C.present() ? std::vector<float>(C.data, C.data + C.length) : std::vector<float>();
    return Job{[=] {
                 cuda::Stream s = raw(stream);
                 auto table = ptrs.empty() ? nullptr : upload_small(device, ptrs, s);
                 auto cs = coeffs.empty() ? nullptr : upload_small(device, coeffs, s);
                 cuda::sum_decode(device, static_cast<const float*>(P.ptr), table ? static_cast<const float* const*>(table->ptr) : nullptr,
                                  cs ? static_cast<const float*>(cs->ptr) : nullptr, int(ptrs.size()), missing, size_t(len), static_cast<float*>(O.ptr), s);
                 cuda::stream_synchronize(device, s);
                 (void)avail;
               },
               info.Env().Undefined(), {}};
  });
}

// ---- Embedding bags: indices and offsets come from the host (checked there), the tables live on the device.
// cudaEmbeddingBag(pass, device, stream|null, rows, dim, indices, offsets, weights|null, mode, scale, src, srcOffset, dst, dstOffset)
//   forward: src = table, dst = out;  backward: src = gradOut, dst = gradTable (accumulated into).
Napi::Value EmbeddingBag(const Napi::CallbackInfo& info) {
  return run_call(info, true, [&] {
    Args a(info);
    bool forward = a.choice(0, "pass", {"forward", "backward"}) == "forward";
    int device = read_device(a, 1);
    auto stream = read_stream(a, 2, device);
    EmbeddingBagArgs e;
    e.rows = a.integer(3, "rows", 1, kMaxDim);
    e.dim = a.integer(4, "dim", 1, kMaxDim);
    auto I = a.array<int32_t>(5, "indices"), O = a.array<int32_t>(6, "offsets");
    auto W = a.array<float>(7, "weights", true);
    e.mode = a.choice(8, "mode", {"sum", "mean"}) == "sum" ? BagMode::Sum : BagMode::Mean;
    float scale = float(a.number(9, "scale"));
    e.indices = I.data;
    e.nnz = I.length;
    e.offsets = O.data;
    e.bags = O.length - 1;
    if (O.length < 1) throw_expected(ErrorKind::Range, "at least one offset", "offsets", "0 offsets");
    if (W.present()) {
      check_min_length(W, e.nnz);
      e.weights = W.data;
    }
    check_embedding_bag(e);
    int64_t table = product_bytes(e.rows, e.dim, 4, "rows x dim"), bags = product_bytes(e.bags, e.dim, 4, "bags x dim");
    Region S = read_region(a, 10, forward ? "table" : "gradOut", device, forward ? table : bags, 4);
    Region D = read_region(a, 12, forward ? "out" : "gradTable", device, forward ? bags : table, 4);
    check_disjoint(D, forward ? "out" : "gradTable", S, forward ? "table" : "gradOut");
    std::vector<int32_t> idx(I.data, I.data + I.length), off(O.data, O.data + O.length);
    std::vector<float> wts = W.present() ? std::vector<float>(W.data, W.data + e.nnz) : std::vector<float>();
    return Job{[=] {
                 cuda::Stream s = raw(stream);
                 EmbeddingBagArgs d = e;
                 auto di = idx.empty() ? nullptr : upload_small(device, idx, s);
                 auto dofs = upload_small(device, off, s);
                 auto dw = wts.empty() ? nullptr : upload_small(device, wts, s);
                 d.indices = di ? static_cast<const int32_t*>(di->ptr) : nullptr;
                 d.offsets = static_cast<const int32_t*>(dofs->ptr);
                 d.weights = dw ? static_cast<const float*>(dw->ptr) : nullptr;
                 if (forward)
                   cuda::embedding_bag_forward(device, d, static_cast<const float*>(S.ptr), static_cast<float*>(D.ptr), s);
                 else
                   cuda::embedding_bag_backward(device, d, static_cast<const float*>(S.ptr), scale, static_cast<float*>(D.ptr), s);
                 cuda::stream_synchronize(device, s);
               },
               info.Env().Undefined(), {}};
  });
}

// ---- Pairwise dots (DLRM's interaction), on device buffers.
// cudaPairwiseDots(pass, device, stream|null, n, vectors, dim, self, z, zOffset, gradOut|null, gradOutOffset, dst, dstOffset)
//   forward: dst = out [n, pairs];  backward: gradOut [n, pairs], dst = gradZ [n, vectors, dim].
Napi::Value PairwiseDots(const Napi::CallbackInfo& info) {
  return run_call(info, true, [&] {
    Args a(info);
    const bool forward = a.choice(0, "pass", {"forward", "backward"}) == "forward";
    const int device = read_device(a, 1);
    auto stream = read_stream(a, 2, device);
    const PairwiseDotsArgs d = read_pairwise_dots(a, 3);
    const int64_t z_bytes = product_bytes(d.n * d.vectors, d.dim, 4, "n x vectors x dim");
    const int64_t pair_bytes = product_bytes(d.n, d.pairs(), 4, "n x pairs");
    Region Z = read_region(a, 7, "z", device, z_bytes, 4);
    Region G = forward ? Region{} : read_region(a, 9, "gradOut", device, pair_bytes, 4);
    Region D = read_region(a, 11, forward ? "out" : "gradZ", device, forward ? pair_bytes : z_bytes, 4);
    check_disjoint(D, forward ? "out" : "gradZ", Z, "z");
    if (!forward) check_disjoint(D, "gradZ", G, "gradOut");
    return Job{[=] {
                 cuda::Stream s = raw(stream);
                 if (forward)
                   cuda::pairwise_dots_forward(device, d, static_cast<const float*>(Z.ptr), static_cast<float*>(D.ptr), s);
                 else
                   cuda::pairwise_dots_backward(device, d, static_cast<const float*>(Z.ptr), static_cast<const float*>(G.ptr), static_cast<float*>(D.ptr), s);
                 cuda::stream_synchronize(device, s);
               },
               info.Env().Undefined(), {}};
  });
}

// ---- Checksum-protected GEMM (ABFT) ----
// Report layout (Float64Array), as sgemmChecked's plus the fault flag: [checks, maxRatio,
// eventCount, faultFired, then per event 11 values: row0, col0, rows, cols, residual, bound, row,
// col, before, after, action (0 corrected, 1 recomputed, 2 detected)].
constexpr int64_t kCudaAbftHeader = 4, kCudaAbftEventFields = 11;

cuda::AbftScheme read_scheme(const Args& a, size_t i) {
  return a.choice(i, "scheme", {"global", "thread"}) == "global" ? cuda::AbftScheme::Global : cuda::AbftScheme::Thread;
}

// cudaAbftWorkspaceBytes(scheme, k, maxEvents, hasWeightSums)
Napi::Value AbftWorkspaceBytes(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Args a(info);
    cuda::CudaAbftOptions o;
    o.scheme = read_scheme(a, 0);
    cuda::GemmArgs g;
    g.k = a.integer(1, "k", 0, kMaxDim);
    o.max_events = int(a.integer(2, "maxEvents", 1, 65536));
    static const double marker = 0;
    o.weight_sums = a.boolean(3, "hasWeightSums") ? &marker : nullptr;  // only its presence matters
    return Napi::Number::New(info.Env(), double(cuda::abft_workspace_bytes(g, o)));
  });
}

// cudaGemmChecked(phase, device, stream|null, scheme, check, tolerance, correct, transA, transB, m, n, k, alpha,
//                 a, aOffset, lda, b, bOffset, ldb, c, cOffset, ldc, abType, workspace, workspaceOffset,
//                 weightSums|null, weightSumsOffset, faults: Int32Array(6)|null, maxEvents, report: Float64Array|null)
// phase 'launch' enqueues the checked GEMM (returns at once); 'finish' waits for it, repairs what
// was flagged and fills `report` (a Promise). Both phases take the same arguments.
Napi::Value GemmChecked(const Napi::CallbackInfo& info) {
  Napi::Value first = info[0];
  const bool finish = first.IsString() && first.As<Napi::String>().Utf8Value() == "finish";
  return run_call(info, finish, [&] {
    Args a(info);
    a.choice(0, "phase", {"launch", "finish"});
    int device = read_device(a, 1);
    auto stream = read_stream(a, 2, device);
    cuda::CudaAbftOptions o;
    o.scheme = read_scheme(a, 3);
    o.check = a.choice(4, "check", {"one-sided", "two-sided"}) == "one-sided" ? AbftCheck::OneSided : AbftCheck::TwoSided;
    o.tolerance = a.number(5, "tolerance");
    o.correct = a.boolean(6, "correct");
    cuda::GemmArgs g;
    g.trans_a = a.boolean(7, "transA");
    g.trans_b = a.boolean(8, "transB");
    g.m = a.integer(9, "m", 0, kMaxDim);
    g.n = a.integer(10, "n", 0, kMaxDim);
    g.k = a.integer(11, "k", 0, kMaxDim);
    g.alpha = float(a.number(12, "alpha"));
    g.lda = a.integer(15, "lda", 1, kMaxDim);
    g.ldb = a.integer(18, "ldb", 1, kMaxDim);
    g.ldc = a.integer(21, "ldc", 1, kMaxDim);
    g.ab = read_dtype(a, 22, "abType");
    g.c_type = cuda::DType::F32;
    o.max_events = int(a.integer(28, "maxEvents", 1, 65536));
    auto F = a.array<int32_t>(27, "faults", true);
    if (F.present()) {
      if (F.length != 6) throw_expected(ErrorKind::Range, "6 values (row, col, bit for two faults; row -1 = off)", "faults", std::to_string(F.length));
      for (int f = 0; f < 2; ++f) {
        o.faults[f].row = F.data[3 * f];
        o.faults[f].col = F.data[3 * f + 1];
        o.faults[f].bit = F.data[3 * f + 2];
      }
    }
    const size_t ab = cuda::dtype_size(g.ab);
    const int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
    const int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
    if (g.lda < a_cols) throw_expected(ErrorKind::Range, "lda >= " + std::to_string(a_cols), "lda", std::to_string(g.lda));
    if (g.ldb < b_cols) throw_expected(ErrorKind::Range, "ldb >= " + std::to_string(b_cols), "ldb", std::to_string(g.ldb));
    if (g.ldc < g.n) throw_expected(ErrorKind::Range, "ldc >= " + std::to_string(g.n), "ldc", std::to_string(g.ldc));
    Region A = read_region(a, 13, "a", device, matrix_bytes(a_rows, a_cols, g.lda, ab, "a"), ab);
    Region B = read_region(a, 16, "b", device, matrix_bytes(b_rows, b_cols, g.ldb, ab, "b"), ab);
    Region C = read_region(a, 19, "c", device, matrix_bytes(g.m, g.n, g.ldc, 4, "c"), 4);
    Region S = read_region(a, 25, "weightSums", device, 2 * g.k * 8, 8, true);
    o.weight_sums = static_cast<const double*>(S.ptr);
    Region W = read_region(a, 23, "workspace", device, cuda::abft_workspace_bytes(g, o), 16);
    check_disjoint(C, "c", A, "a");
    check_disjoint(C, "c", B, "b");
    check_disjoint(C, "c", S, "weightSums");
    check_disjoint(W, "workspace", A, "a");
    check_disjoint(W, "workspace", B, "b");
    check_disjoint(W, "workspace", C, "c");
    check_disjoint(W, "workspace", S, "weightSums");
    g.a = A.ptr;
    g.b = B.ptr;
    g.c = C.ptr;
    cuda::validate_gemm_checked(g, o);
    if (!finish) {
      cuda::gemm_checked_launch(device, g, o, W.ptr, raw(stream));
      return Job{[] {}, info.Env().Undefined(), {}};
    }
    auto R = a.array<double>(29, "report");
    check_min_length(R, kCudaAbftHeader);
    double* report = R.data;
    const int64_t capacity = (R.length - kCudaAbftHeader) / kCudaAbftEventFields;
    return Job{[=] {
                 (void)A; (void)B; (void)C; (void)S;
                 cuda::CudaAbftReport r = cuda::gemm_checked_finish(device, g, o, W.ptr, raw(stream));
                 report[0] = double(r.checks);
                 report[1] = r.max_ratio;
                 report[2] = double(std::max<int64_t>(r.event_count, int64_t(r.events.size())));
                 report[3] = r.fault_fired ? 1 : 0;
                 for (int64_t e = 0; e < capacity && e < int64_t(r.events.size()); ++e) {
                   const AbftEvent& v = r.events[size_t(e)];
                   double* d = report + kCudaAbftHeader + e * kCudaAbftEventFields;
                   const double f[kCudaAbftEventFields] = {double(v.row0), double(v.col0), double(v.rows), double(v.cols), v.residual, v.bound,
                                                           double(v.row), double(v.col), double(v.before), double(v.after),
                                                           v.action == AbftAction::Corrected ? 0.0 : v.action == AbftAction::Recomputed ? 1.0 : 2.0};
                   for (int64_t q = 0; q < kCudaAbftEventFields; ++q) d[q] = f[q];
                 }
               },
               R.value, {R.value}};
  });
}

// cudaAbftWeightSums(device, stream|null, dtype, transB, k, n, b, bOffset, ldb, out, outOffset): 2k doubles, enqueued.
Napi::Value AbftWeightSums(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    Args a(info);
    int device = read_device(a, 0);
    auto stream = read_stream(a, 1, device);
    cuda::DType t = read_dtype(a, 2, "dtype");
    bool tb = a.boolean(3, "transB");
    int64_t k = a.integer(4, "k", 0, kMaxDim), n = a.integer(5, "n", 0, kMaxDim), ldb = a.integer(8, "ldb", 1, kMaxDim);
    const int64_t rows = tb ? n : k, cols = tb ? k : n;
    if (ldb < cols) throw_expected(ErrorKind::Range, "ldb >= " + std::to_string(cols), "ldb", std::to_string(ldb));
    Region B = read_region(a, 6, "b", device, matrix_bytes(rows, cols, ldb, cuda::dtype_size(t), "b"), cuda::dtype_size(t));
    Region O = read_region(a, 9, "out", device, 2 * k * 8, 8);
    check_disjoint(O, "out", B, "b");
    cuda::abft_weight_sums(device, t, tb, k, n, B.ptr, ldb, static_cast<double*>(O.ptr), raw(stream));
    return info.Env().Undefined();
  });
}

// cudaFlipBit(device, stream|null, dtype, data, dataOffset, count, index, bit): flips one bit of element `index` (< count).
Napi::Value FlipBit(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    Args a(info);
    int device = read_device(a, 0);
    auto stream = read_stream(a, 1, device);
    cuda::DType t = read_dtype(a, 2, "dtype");
    int64_t count = a.integer(5, "count", 1, int64_t(1) << 44);
    int64_t index = a.integer(6, "index", 0, count - 1);
    int bit = int(a.integer(7, "bit", 0, int64_t(cuda::dtype_size(t)) * 8 - 1));
    Region D = read_region(a, 3, "data", device, count * int64_t(cuda::dtype_size(t)), cuda::dtype_size(t));
    cuda::flip_bit(device, t, D.ptr, index, bit, raw(stream));
    return info.Env().Undefined();
  });
}

}  // namespace

void register_cuda(Napi::Env env, Napi::Object exports) {
  exports.Set("CudaBuffer", BufferHandle::Define(env));
  exports.Set("CudaStream", StreamWrap::Define(env));
  exports.Set("CudaEvent", EventWrap::Define(env));
  struct Entry { const char* name; Napi::Function::Callback fn; };
  const Entry entries[] = {
      {"cudaProperties", Properties}, {"cudaMemoryInfo", MemoryInfo}, {"cudaPinned", Pinned},
      {"cudaUpload", Copy<true>}, {"cudaDownload", Copy<false>}, {"cudaCopyDevice", CopyDevice}, {"cudaMemset", Memset},
      {"cudaConvert", Convert}, {"cudaGemm", Gemm}, {"cublasStatus", CublasStatus}, {"cudaConv2d", Conv2d},
      {"cudaChecksum", Checksum}, {"cudaXorEncode", XorEncode}, {"cudaSumEncode", SumEncode}, {"cudaSumDecode", SumDecode},
      {"cudaEmbeddingBag", EmbeddingBag}, {"cudaPairwiseDots", PairwiseDots}, {"cudaAbftWorkspaceBytes", AbftWorkspaceBytes}, {"cudaGemmChecked", GemmChecked},
      {"cudaAbftWeightSums", AbftWeightSums}, {"cudaFlipBit", FlipBit},
  };
  for (const Entry& e : entries) exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
}

}  // namespace kintsugi::binding
