#pragma once
/// \file
/// Internals shared by the text importers and exporters: UTF-8 validation, so names with stray bytes
/// (a file path, a user's policy string) still give well-formed JSON and XML, and the visible name
/// (`U+FEFF`) of a character an error message must not print raw.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace paci::detail {

/// The length of the well-formed UTF-8 sequence starting at `text[i]` (1 for ASCII), or 0 when the
/// bytes there are not one (stray continuation, truncated, overlong, surrogate, beyond U+10FFFF).
[[nodiscard]] constexpr std::size_t utf8_sequence(std::string_view text, std::size_t i) noexcept {
    const auto b0 = static_cast<unsigned char>(text[i]);
    if (b0 < 0x80) return 1;
    std::size_t n = 0;
    std::uint32_t cp = 0;
    std::uint32_t min = 0;
    if ((b0 & 0xE0U) == 0xC0U) {
        n = 2;
        cp = b0 & 0x1FU;
        min = 0x80;
    } else if ((b0 & 0xF0U) == 0xE0U) {
        n = 3;
        cp = b0 & 0x0FU;
        min = 0x800;
    } else if ((b0 & 0xF8U) == 0xF0U) {
        n = 4;
        cp = b0 & 0x07U;
        min = 0x10000;
    } else {
        return 0;
    }
    if (i + n > text.size()) return 0;
    for (std::size_t k = 1; k < n; ++k) {
        const auto b = static_cast<unsigned char>(text[i + k]);
        if ((b & 0xC0U) != 0x80U) return 0;
        cp = (cp << 6) | (b & 0x3FU);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

/// The code point of the well-formed sequence of `n` bytes (`n == utf8_sequence(text, i)`, `n > 0`)
/// at `text[i]`.
[[nodiscard]] constexpr std::uint32_t utf8_code_point(std::string_view text, std::size_t i, std::size_t n) noexcept {
    const auto b0 = static_cast<unsigned char>(text[i]);
    if (n == 1) return b0;
    std::uint32_t cp = b0 & (0x7FU >> n);
    for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3FU);
    return cp;
}

/// `U+FEFF`: the Unicode name of a code point, upper-case hex, at least four digits.
[[nodiscard]] inline std::string code_point_name(std::uint32_t cp) {
    constexpr std::string_view hex = "0123456789ABCDEF";
    std::string digits;
    for (; cp != 0 || digits.size() < 4; cp >>= 4) digits.insert(digits.begin(), hex[cp & 0xFU]);
    return "U+" + digits;
}

/// U+FFFD, written for every byte that does not start a well-formed sequence.
inline constexpr std::string_view utf8_replacement = "\xEF\xBF\xBD";

/// Appends `text` to `out`, walking it once: a well-formed multi-byte UTF-8 sequence is copied as it
/// is, a byte that starts none becomes U+FFFD, and each ASCII byte goes to `ascii(c)`, which appends
/// it (escaped as its format needs, or not at all) to `out` itself.
template <class Ascii>
void append_utf8_text(std::string& out, std::string_view text, Ascii&& ascii) {
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (static_cast<unsigned char>(c) < 0x80) {
            ascii(c);
            continue;
        }
        const std::size_t n = utf8_sequence(text, i);
        if (n == 0) {
            out += utf8_replacement;
        } else {
            out += text.substr(i, n);
            i += n - 1;
        }
    }
}

} // namespace paci::detail
