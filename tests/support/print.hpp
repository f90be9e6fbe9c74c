#pragma once
/// \file
/// Test helper: a value as its `operator<<` writes it.

#include <sstream>
#include <string>

namespace paci_test {

/// What `out << value` writes.
template <class T>
std::string print(const T& value) {
    std::ostringstream out;
    out << value;
    return out.str();
}

} // namespace paci_test
