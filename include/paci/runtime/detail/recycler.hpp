#pragma once
/// \file
/// Internals shared by the transports: buffers of completed sends kept for later receives
/// (`recycler`), so a pipeline in steady state allocates nothing per message.

#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

namespace paci::detail {

/// Up to `limit` spare buffers. `keep` stores one (drops it when full); `take(fits)` hands out the
/// first kept buffer for which `fits(buffer)` is true, `take_smallest(fits, key)` the fitting one
/// with the smallest key, or nothing. The NCCL transport takes a
/// buffer of exactly the receive's size; the MPI transport one holding between n and 2n elements.
/// Owner thread only; `keep` never throws (a buffer it cannot store is destroyed).
template <class Buffer>
class recycler {
public:
    explicit recycler(std::size_t limit = 0) noexcept : limit_(limit) {}

    [[nodiscard]] std::size_t limit() const noexcept { return limit_; }
    void set_limit(std::size_t limit) noexcept { limit_ = limit; }
    [[nodiscard]] std::size_t size() const noexcept { return spares_.size(); }

    /// Keeps `b` for reuse when there is room; true when kept.
    bool keep(Buffer&& b) noexcept {
        if (spares_.size() >= limit_) return false;
        try {
            spares_.push_back(std::move(b));
            return true;
        } catch (...) {
            return false; // out of memory while keeping it: it is destroyed with its owner
        }
    }

    /// The first kept buffer that `fits`, removed from the pool; empty when none does.
    template <class Fits>
    [[nodiscard]] std::optional<Buffer> take(Fits&& fits) {
        for (auto it = spares_.begin(); it != spares_.end(); ++it) {
            if (!fits(static_cast<const Buffer&>(*it))) continue;
            std::optional<Buffer> out(std::move(*it));
            spares_.erase(it);
            return out;
        }
        return std::nullopt;
    }

    /// Of the kept buffers that `fits`, the one with the smallest `key(buffer)`, removed from the
    /// pool; empty when none fits. (The MPI transport: the smallest spare that holds `n` elements.)
    template <class Fits, class Key>
    [[nodiscard]] std::optional<Buffer> take_smallest(Fits&& fits, Key&& key) {
        auto best = spares_.end();
        for (auto it = spares_.begin(); it != spares_.end(); ++it) {
            const Buffer& b = *it;
            if (fits(b) && (best == spares_.end() || key(b) < key(static_cast<const Buffer&>(*best)))) best = it;
        }
        if (best == spares_.end()) return std::nullopt;
        std::optional<Buffer> out(std::move(*best));
        spares_.erase(best);
        return out;
    }

    /// Drops every kept buffer.
    void clear() noexcept { spares_.clear(); }

private:
    std::size_t limit_;
    std::vector<Buffer> spares_;
};

} // namespace paci::detail
