// Errors raised by kernels and checks. Native code never aborts: every failure is an Error that
// the binding turns into a JS TypeError / RangeError / Error with a stable code.
#pragma once
#include <stdexcept>
#include <string>

namespace kintsugi {

enum class ErrorKind {
  Type,         // wrong type of argument (becomes TypeError)
  Range,        // value or size out of range (becomes RangeError)
  Unsupported,  // operation not available on this device / build
  Device,       // a device (CUDA) call failed
  OutOfMemory,  // allocation failed
  Internal,
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// "Expected {expected} for {name} but received {actual}": one message shape everywhere.
[[noreturn]] void throw_expected(ErrorKind kind, const std::string& expected, const std::string& name,
                                 const std::string& actual);

}  // namespace kintsugi
