// A small JSON writer for paci-plan's --format json (schema in the README).
#pragma once

#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace paci_plan {

class json_writer {
public:
    json_writer& begin_object() { return open('{'); }
    json_writer& end_object() { return close('}'); }
    json_writer& begin_array() { return open('['); }
    json_writer& end_array() { return close(']'); }

    json_writer& key(std::string_view k) {
        separate();
        string(k);
        out_ << ':';
        after_key_ = true;
        return *this;
    }
    json_writer& value(std::string_view v) {
        separate();
        string(v);
        return *this;
    }
    json_writer& value(const char* v) { return value(std::string_view(v)); }
    json_writer& value(bool v) {
        separate();
        out_ << (v ? "true" : "false");
        return *this;
    }
    json_writer& value(int v) {
        separate();
        out_ << v;
        return *this;
    }
    json_writer& value(double v) {
        separate();
        if (!std::isfinite(v)) {
            out_ << "null";
        } else {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%.10g", v);
            out_ << buf;
        }
        return *this;
    }
    json_writer& null() {
        separate();
        out_ << "null";
        return *this;
    }
    template <class T>
    json_writer& array(const std::vector<T>& xs) {
        begin_array();
        for (const auto& x : xs) value(x);
        return end_array();
    }
    [[nodiscard]] std::string str() const { return out_.str(); }

private:
    json_writer& open(char c) {
        separate();
        out_ << c;
        first_.push_back(true);
        return *this;
    }
    json_writer& close(char c) {
        out_ << c;
        first_.pop_back();
        return *this;
    }
    void separate() {
        if (after_key_) {
            after_key_ = false;
            return;
        }
        if (!first_.empty()) {
            if (!first_.back()) out_ << ',';
            first_.back() = false;
        }
    }
    void string(std::string_view s) {
        out_ << '"';
        for (const char ch : s) {
            const auto c = static_cast<unsigned char>(ch);
            if (c == '"') out_ << "\\\"";
            else if (c == '\\') out_ << "\\\\";
            else if (c == '\n') out_ << "\\n";
            else if (c == '\t') out_ << "\\t";
            else if (c < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out_ << buf;
            } else out_ << ch;
        }
        out_ << '"';
    }

    std::ostringstream out_;
    std::vector<bool> first_;
    bool after_key_ = false;
};

} // namespace paci_plan
