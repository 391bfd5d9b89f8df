// Argument readers for the binding: every value from JS is checked here before it reaches a
// kernel. Failures throw kintsugi::Error with the message shape
// "Expected {expected} for {name} but received {actual}", which guard() turns into a
// TypeError / RangeError (or a rejected Promise for async calls).
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kintsugi/conv.h"
#include "kintsugi/embedding.h"
#include "kintsugi/error.h"

namespace kintsugi::binding {

std::string describe(const Napi::Value& v);

template <typename T> struct TypedArrayTraits;
template <> struct TypedArrayTraits<float> { static constexpr napi_typedarray_type type = napi_float32_array; static constexpr const char* name = "Float32Array"; };
template <> struct TypedArrayTraits<double> { static constexpr napi_typedarray_type type = napi_float64_array; static constexpr const char* name = "Float64Array"; };
template <> struct TypedArrayTraits<int32_t> { static constexpr napi_typedarray_type type = napi_int32_array; static constexpr const char* name = "Int32Array"; };
template <> struct TypedArrayTraits<uint8_t> { static constexpr napi_typedarray_type type = napi_uint8_array; static constexpr const char* name = "Uint8Array"; };

// A typed array argument: its data, its length in elements, and where it lives (for overlap checks).
template <typename T> struct Array {
  T* data = nullptr;
  int64_t length = 0;
  std::string name;
  Napi::Value value;           // to keep it alive across an async call
  const void* buffer = nullptr;  // start of the ArrayBuffer
  size_t byte_offset = 0, byte_length = 0;
  bool present() const { return !value.IsEmpty(); }
};

class Args {
 public:
  Args(const Napi::CallbackInfo& info, size_t first = 0) : info_(info), first_(first) {}

  Napi::Env env() const { return info_.Env(); }
  Napi::Value value(size_t i) const { return info_[first_ + i]; }

  bool boolean(size_t i, const char* name) const;
  double number(size_t i, const char* name) const;  // finite
  int64_t integer(size_t i, const char* name, int64_t min, int64_t max) const;
  std::string choice(size_t i, const char* name, const std::vector<std::string>& options) const;

  template <typename T> Array<T> array(size_t i, const char* name, bool nullable = false) const {
    Napi::Value v = value(i);
    if (nullable && (v.IsNull() || v.IsUndefined())) {
      Array<T> absent;
      absent.name = name;
      return absent;
    }
    return checked_array<T>(v, name, nullable);
  }

  // An array of typed arrays (parity blocks), all of the same length.
  template <typename T> std::vector<Array<T>> array_list(size_t i, const char* name, size_t min_count) const {
    Napi::Value v = value(i);
    if (!v.IsArray()) throw_expected(ErrorKind::Type, std::string("an array of ") + TypedArrayTraits<T>::name, name, describe(v));
    auto list = v.As<Napi::Array>();
    if (list.Length() < min_count)
      throw_expected(ErrorKind::Range, "at least " + std::to_string(min_count) + " blocks", name, std::to_string(list.Length()) + " blocks");
    if (list.Length() > 4096) throw_expected(ErrorKind::Range, "at most 4096 blocks", name, std::to_string(list.Length()) + " blocks");
    std::vector<Array<T>> out;
    for (uint32_t j = 0; j < list.Length(); ++j) {
      std::string element = std::string(name) + "[" + std::to_string(j) + "]";
      out.push_back(checked_array<T>(list.Get(j), element));
      if (out.back().length != out.front().length)
        throw_expected(ErrorKind::Range, std::to_string(out.front().length) + " elements (as " + std::string(name) + "[0])", element,
                       std::to_string(out.back().length));
    }
    return out;
  }

 public:
  template <typename T> static Array<T> checked_array(Napi::Value v, const std::string& name, bool nullable = false) {
    Array<T> out;
    out.name = name;
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TypedArrayTraits<T>::type)
      throw_expected(ErrorKind::Type, std::string(nullable ? "null or a " : "a ") + TypedArrayTraits<T>::name, name, describe(v));
    auto typed = v.As<Napi::TypedArray>();
    // The data pointer comes from the typed array itself: a view of a SharedArrayBuffer (memory a
    // worker thread shares) has no ArrayBuffer data to ask for, and cannot be detached.
    void* data = nullptr;
    napi_value buffer = nullptr;
    size_t length = 0, offset = 0;
    napi_typedarray_type type;
    NAPI_THROW_IF_FAILED(v.Env(), napi_get_typedarray_info(v.Env(), v, &type, &length, &data, &buffer, &offset), out);
    if (Napi::ArrayBuffer(v.Env(), buffer).IsDetached())
      throw_expected(ErrorKind::Type, std::string("a ") + TypedArrayTraits<T>::name + " with an attached buffer", name, "a detached buffer");
    out.byte_offset = offset;
    out.byte_length = typed.ByteLength();
    out.length = int64_t(length);
    out.data = static_cast<T*>(data);
    out.buffer = static_cast<uint8_t*>(data) - offset;
    out.value = v;
    return out;
  }

 private:
  const Napi::CallbackInfo& info_;
  size_t first_;
};

// Throws when an output shares memory with an input: the kernels read inputs while writing
// outputs, so aliasing would give silently wrong answers.
template <typename O, typename I> void check_no_overlap(const Array<O>& out, const Array<I>& in) {
  if (!out.present() || !in.present() || out.buffer != in.buffer) return;
  size_t a0 = out.byte_offset, a1 = a0 + out.byte_length, b0 = in.byte_offset, b1 = b0 + in.byte_length;
  if (a0 < b1 && b0 < a1 && out.byte_length && in.byte_length)
    throw_expected(ErrorKind::Range, "memory not shared with " + in.name, out.name, "an overlapping view of the same buffer");
}

template <typename T> void check_min_length(const Array<T>& a, int64_t need) {
  if (a.length < need)
    throw_expected(ErrorKind::Range, "at least " + std::to_string(need) + " elements", a.name, std::to_string(a.length) + " elements");
}

// The largest extent (rows, columns, batch, ...) a call accepts: keeps every product of two
// extents inside int64.
inline constexpr int64_t kMaxDim = 2147483647;

// Whether a call's first argument asks for the Promise form.
bool read_async(const Napi::CallbackInfo& info);

// A conv2d parameter object {n, cIn, h, w, cOut, kh, kw, strideH, ...} at argument i, checked.
Conv2dParams read_conv_params(const Args& a, size_t i);

// The pairwise dots' (n, vectors, dim, self) at arguments i..i+3, checked.
PairwiseDotsArgs read_pairwise_dots(const Args& a, size_t i);

}  // namespace kintsugi::binding
