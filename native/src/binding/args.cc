#include "args.h"

#include <cmath>
#include <sstream>

#include "kintsugi/conv.h"

namespace kintsugi::binding {

std::string describe(const Napi::Value& v) {
  if (v.IsEmpty() || v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsNumber()) {
    std::ostringstream s;
    s << v.As<Napi::Number>().DoubleValue();
    return s.str();
  }
  if (v.IsBigInt()) return "a bigint";
  if (v.IsString()) {
    std::string text = v.As<Napi::String>().Utf8Value();
    if (text.size() > 40) text = text.substr(0, 40) + "...";
    return "\"" + text + "\"";
  }
  if (v.IsTypedArray()) {
    static const char* names[] = {"Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array", "Int32Array",
                                  "Uint32Array", "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array"};
    auto t = v.As<Napi::TypedArray>();
    int type = int(t.TypedArrayType());
    std::string name = type >= 0 && type < 11 ? names[type] : "TypedArray";
    return "a " + name + " of length " + std::to_string(t.ElementLength());
  }
  if (v.IsArrayBuffer()) return "an ArrayBuffer";
  if (v.IsArray()) return "an array of length " + std::to_string(v.As<Napi::Array>().Length());
  if (v.IsFunction()) return "a function";
  if (v.IsSymbol()) return "a symbol";
  return "an object";
}

bool Args::boolean(size_t i, const char* name) const {
  Napi::Value v = value(i);
  if (!v.IsBoolean()) throw_expected(ErrorKind::Type, "a boolean", name, describe(v));
  return v.As<Napi::Boolean>().Value();
}

double Args::number(size_t i, const char* name) const {
  Napi::Value v = value(i);
  if (!v.IsNumber()) throw_expected(ErrorKind::Type, "a number", name, describe(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw_expected(ErrorKind::Range, "a finite number", name, describe(v));
  return d;
}

int64_t Args::integer(size_t i, const char* name, int64_t min, int64_t max) const {
  Napi::Value v = value(i);
  if (!v.IsNumber()) throw_expected(ErrorKind::Type, "an integer", name, describe(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d) throw_expected(ErrorKind::Type, "an integer", name, describe(v));
  if (d < double(min) || d > double(max))
    throw_expected(ErrorKind::Range, "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]", name, describe(v));
  return int64_t(d);
}

std::string Args::choice(size_t i, const char* name, const std::vector<std::string>& options) const {
  Napi::Value v = value(i);
  std::string expected;
  for (size_t j = 0; j < options.size(); ++j) expected += (j ? " | '" : "'") + options[j] + "'";
  if (!v.IsString()) throw_expected(ErrorKind::Type, "one of " + expected, name, describe(v));
  std::string s = v.As<Napi::String>().Utf8Value();
  for (auto& o : options)
    if (o == s) return s;
  throw_expected(ErrorKind::Range, "one of " + expected, name, describe(v));
}

namespace {

int64_t int_field(const Napi::Object& o, const char* name, int64_t min, int64_t max) {
  Napi::Value v = o.Get(name);
  if (!v.IsNumber()) throw_expected(ErrorKind::Type, "an integer", std::string("params.") + name, describe(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d) throw_expected(ErrorKind::Type, "an integer", std::string("params.") + name, describe(v));
  if (d < double(min) || d > double(max))
    throw_expected(ErrorKind::Range, "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]", std::string("params.") + name, describe(v));
  return int64_t(d);
}

}  // namespace

Conv2dParams read_conv_params(const Args& a, size_t i) {
  Napi::Value v = a.value(i);
  if (!v.IsObject() || v.IsArray() || v.IsTypedArray()) throw_expected(ErrorKind::Type, "a conv2d parameter object", "params", describe(v));
  auto o = v.As<Napi::Object>();
  Conv2dParams p;
  p.n = int_field(o, "n", 1, kMaxDim);
  p.c_in = int_field(o, "cIn", 1, kMaxDim);
  p.h = int_field(o, "h", 1, kMaxDim);
  p.w = int_field(o, "w", 1, kMaxDim);
  p.c_out = int_field(o, "cOut", 1, kMaxDim);
  p.kh = int_field(o, "kh", 1, 65535);
  p.kw = int_field(o, "kw", 1, 65535);
  p.stride_h = int_field(o, "strideH", 1, 65535);
  p.stride_w = int_field(o, "strideW", 1, 65535);
  p.pad_h = int_field(o, "padH", 0, 65535);
  p.pad_w = int_field(o, "padW", 0, 65535);
  p.dilation_h = int_field(o, "dilationH", 1, 65535);
  p.dilation_w = int_field(o, "dilationW", 1, 65535);
  p.groups = int_field(o, "groups", 1, kMaxDim);
  Napi::Value layout = o.Get("layout");
  if (!layout.IsUndefined()) {
    const std::string name = layout.IsString() ? layout.As<Napi::String>().Utf8Value() : std::string();
    if (name == "nhwc")
      p.layout = ConvLayout::Nhwc;
    else if (name != "nchw")
      throw_expected(layout.IsString() ? ErrorKind::Range : ErrorKind::Type, "'nchw' | 'nhwc'", "params.layout", describe(layout));
  }
  // Products in double first: an int64 product of unchecked sizes could overflow.
  double in = double(p.n) * double(p.c_in) * double(p.h) * double(p.w);
  double weights = double(p.c_out) * double(p.c_in) * double(p.kh) * double(p.kw);
  if (in > 9.0e15 || weights > 9.0e15) throw_expected(ErrorKind::Range, "tensor sizes below 2^53 elements", "params", "larger sizes");
  check_conv2d(p);
  return p;
}

bool read_async(const Napi::CallbackInfo& info) { return info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value(); }

PairwiseDotsArgs read_pairwise_dots(const Args& a, size_t i) {
  PairwiseDotsArgs d;
  d.n = a.integer(i, "n", 0, kMaxDim);
  d.vectors = a.integer(i + 1, "vectors", 0, 1 << 16);
  d.dim = a.integer(i + 2, "dim", 0, kMaxDim);
  d.self = a.boolean(i + 3, "self");
  if (double(d.n) * double(d.vectors) * double(d.dim) > 9.0e15 || double(d.n) * double(d.pairs()) > 9.0e15)
    throw_expected(ErrorKind::Range, "fewer than 2^53 elements", "n x vectors x dim", "more");
  return d;
}

}  // namespace kintsugi::binding
