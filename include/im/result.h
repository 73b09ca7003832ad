#pragma once
// Errors as values: a [[nodiscard]] Result<T> holds a T or an Error with a
// protocol status code and a message for people. Expected failures travel
// as these; exceptions are for start-up only.

#include <cstdint>
#include <string>
#include <utility>
#include <variant>

#include "im/protocol.h"

namespace im {

struct Error {
  StatusCode code = StatusCode::kInternal;
  std::string message;
  std::uint32_t retry_after_ms = 0;  // RATE_LIMITED, UNAVAILABLE
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};

inline Error make_error(StatusCode code, std::string message) {
  return Error{code, std::move(message)};
}

}  // namespace im
