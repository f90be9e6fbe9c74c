#pragma once
/// \file
/// Error types and the one helper every throw goes through.

#include <cassert>
#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace paci {

/// Bad configuration: a policy parameter, a shape or an option out of range.
/// Message form: `paci::<api>: <what> (<value>) <requirement>`.
class config_error : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

/// Bad textual input (an action token, a CSV cell); carries the 1-based line and column.
class parse_error : public std::runtime_error {
public:
    parse_error(const std::string& message, std::size_t line, std::size_t column)
        : std::runtime_error(message), line_(line), column_(column) {}
    [[nodiscard]] std::size_t line() const noexcept { return line_; }
    [[nodiscard]] std::size_t column() const noexcept { return column_; }

private:
    std::size_t line_;
    std::size_t column_;
};

namespace detail {

template <class... Parts>
[[nodiscard]] std::string concat(const Parts&... parts) {
    std::ostringstream out;
    (out << ... << parts);
    return std::move(out).str();
}

/// Throws `config_error("paci::<api>: <what> (<value>) <requirement>")`.
template <class Value>
[[noreturn]] void config_fail(std::string_view api, std::string_view what, const Value& value,
                              std::string_view requirement) {
    throw config_error(concat("paci::", api, ": ", what, " (", value, ") ", requirement));
}

/// Throws `config_error` when `ok` is false; the message is built only on failure.
template <class Value>
void config_require(bool ok, std::string_view api, std::string_view what, const Value& value,
                    std::string_view requirement) {
    if (!ok) config_fail(api, what, value, requirement);
}

/// Throws `parse_error("paci::<api>: <message>", line, column)`.
[[noreturn]] inline void parse_fail(std::string_view api, std::string_view message, std::size_t line,
                                    std::size_t column) {
    throw parse_error(concat("paci::", api, ": ", message, " at line ", line, ", column ", column),
                      line, column);
}

} // namespace detail
} // namespace paci

/// Internal invariant check, active in debug builds only.
#ifndef NDEBUG
#define PACI_ASSERT(cond, msg) assert((cond) && (msg))
#else
#define PACI_ASSERT(cond, msg) ((void)0)
#endif
