#include "kintsugi/error.h"

namespace kintsugi {

void throw_expected(ErrorKind kind, const std::string& expected, const std::string& name, const std::string& actual) {
  throw Error(kind, "Expected " + expected + " for " + name + " but received " + actual);
}

}  // namespace kintsugi
