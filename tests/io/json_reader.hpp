#pragma once

// A small strict JSON reader for the io tests (RFC 8259: objects, arrays, strings with escapes,
// numbers, true/false/null). It exists to prove an exporter's output is well-formed and to look
// inside it; it throws std::runtime_error with the offset of the first error.

#include <cstddef>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace paci_test {

struct json {
    enum class kind { null, boolean, number, string, array, object };
    kind type = kind::null;
    bool b = false;
    double number = 0;
    std::string str;
    std::vector<json> items;
    std::vector<std::pair<std::string, json>> members; // in document order

    [[nodiscard]] bool has(std::string_view key) const {
        for (const auto& [k, v] : members)
            if (k == key) return true;
        return false;
    }
    [[nodiscard]] const json& operator[](std::string_view key) const {
        for (const auto& [k, v] : members)
            if (k == key) return v;
        throw std::runtime_error("json: no member '" + std::string(key) + "'");
    }
};

class json_reader {
public:
    static json parse(std::string_view text) {
        json_reader r(text);
        r.ws();
        json v = r.value();
        r.ws();
        if (r.pos_ != text.size()) r.fail("trailing characters");
        return v;
    }

private:
    explicit json_reader(std::string_view t) : t_(t) {}
    std::string_view t_;
    std::size_t pos_ = 0;

    [[noreturn]] void fail(const std::string& what) const {
        throw std::runtime_error("json: " + what + " at offset " + std::to_string(pos_));
    }
    void ws() {
        while (pos_ < t_.size() && (t_[pos_] == ' ' || t_[pos_] == '\n' || t_[pos_] == '\r' || t_[pos_] == '\t')) ++pos_;
    }
    char peek() const { return pos_ < t_.size() ? t_[pos_] : '\0'; }
    void expect(char c) {
        if (peek() != c) fail(std::string("expected '") + c + "'");
        ++pos_;
    }
    void literal(std::string_view word) {
        if (t_.substr(pos_, word.size()) != word) fail("bad literal");
        pos_ += word.size();
    }
    json value() {
        json v;
        switch (peek()) {
        case '{': {
            v.type = json::kind::object;
            ++pos_;
            ws();
            if (peek() == '}') {
                ++pos_;
                return v;
            }
            while (true) {
                ws();
                std::string key = string();
                ws();
                expect(':');
                ws();
                v.members.emplace_back(std::move(key), value());
                ws();
                if (peek() == ',') {
                    ++pos_;
                    continue;
                }
                expect('}');
                return v;
            }
        }
        case '[': {
            v.type = json::kind::array;
            ++pos_;
            ws();
            if (peek() == ']') {
                ++pos_;
                return v;
            }
            while (true) {
                ws();
                v.items.push_back(value());
                ws();
                if (peek() == ',') {
                    ++pos_;
                    continue;
                }
                expect(']');
                return v;
            }
        }
        case '"':
            v.type = json::kind::string;
            v.str = string();
            return v;
        case 't':
            literal("true");
            v.type = json::kind::boolean;
            v.b = true;
            return v;
        case 'f':
            literal("false");
            v.type = json::kind::boolean;
            return v;
        case 'n':
            literal("null");
            return v;
        default: return number();
        }
    }
    json number() {
        const std::size_t start = pos_;
        if (peek() == '-') ++pos_;
        if (peek() == '0') ++pos_;
        else if (peek() >= '1' && peek() <= '9') while (peek() >= '0' && peek() <= '9') ++pos_;
        else fail("bad number");
        if (peek() == '.') {
            ++pos_;
            if (!(peek() >= '0' && peek() <= '9')) fail("bad fraction");
            while (peek() >= '0' && peek() <= '9') ++pos_;
        }
        if (peek() == 'e' || peek() == 'E') {
            ++pos_;
            if (peek() == '+' || peek() == '-') ++pos_;
            if (!(peek() >= '0' && peek() <= '9')) fail("bad exponent");
            while (peek() >= '0' && peek() <= '9') ++pos_;
        }
        json v;
        v.type = json::kind::number;
        v.number = std::strtod(std::string(t_.substr(start, pos_ - start)).c_str(), nullptr);
        return v;
    }
    std::string string() {
        expect('"');
        std::string out;
        while (true) {
            if (pos_ >= t_.size()) fail("unterminated string");
            const char c = t_[pos_++];
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) fail("raw control character in string");
            if (c != '\\') {
                out += c;
                continue;
            }
            const char e = peek();
            ++pos_;
            switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                if (pos_ + 4 > t_.size()) fail("short \\u escape");
                const unsigned long code = std::strtoul(std::string(t_.substr(pos_, 4)).c_str(), nullptr, 16);
                pos_ += 4;
                if (code >= 0x80) fail("test reader handles only ASCII \\u escapes");
                out += static_cast<char>(code);
                break;
            }
            default: fail("bad escape");
            }
        }
    }
};

} // namespace paci_test
