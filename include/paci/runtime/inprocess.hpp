#pragma once
/// \file
/// The in-process transport: one thread per rank, buffers moved (never copied) between them.

#include <paci/runtime/detail/agreement.hpp>
#include <paci/runtime/detail/deadline.hpp>
#include <paci/runtime/errors.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace paci {

template <class Buffer>
class inprocess_communicator;

/// The shared state of `size` in-process ranks: one mailbox per rank (a mutex, a condition variable
/// and one FIFO per (source, tag)), the first abort reason, and the start-up agreement.
template <class Buffer>
class inprocess_world {
public:
    explicit inprocess_world(int size) : size_(size) {
        detail::config_require(size >= 1, "inprocess_world", "size", size, "must be >= 1");
        for (int r = 0; r < size; ++r) boxes_.push_back(std::make_unique<mailbox>());
    }
    inprocess_world(const inprocess_world&) = delete;
    inprocess_world& operator=(const inprocess_world&) = delete;

    [[nodiscard]] int size() const noexcept { return size_; }

    /// The communicator of `rank`; the world must outlive it.
    [[nodiscard]] inprocess_communicator<Buffer> communicator(int rank) {
        detail::config_require(rank >= 0 && rank < size_, "inprocess_world", "rank", rank,
                               detail::concat("must be in [0, ", size_, ")"));
        return inprocess_communicator<Buffer>(*this, rank);
    }

    /// Stops every wait in the world, for good: the first reason is kept and reported by
    /// `aborted_error`, and later waits fail at once (a world that saw a failure is not reused).
    void abort(const std::string& why) {
        {
            std::lock_guard lock(abort_mutex_);
            if (!aborted_) {
                reason_ = why;
                aborted_ = true;
            }
        }
        for (auto& b : boxes_) {
            std::lock_guard lock(b->mutex);
            b->cv.notify_all();
        }
        std::lock_guard lock(agree_mutex_);
        agree_cv_.notify_all();
    }
    [[nodiscard]] bool aborted() const {
        std::lock_guard lock(abort_mutex_);
        return aborted_;
    }
    [[nodiscard]] std::string abort_reason() const {
        std::lock_guard lock(abort_mutex_);
        return reason_;
    }

private:
    friend class inprocess_communicator<Buffer>;
    struct mailbox {
        std::mutex mutex;
        std::condition_variable cv;
        std::unordered_map<std::uint64_t, std::deque<Buffer>> queues; // key: (source, tag)
    };
    static std::uint64_t key(int source, int tag) noexcept {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(source)) << 32) | static_cast<std::uint32_t>(tag);
    }

    void post(int source, int dest, int tag, Buffer&& b) {
        mailbox& box = *boxes_[static_cast<std::size_t>(dest)];
        {
            std::lock_guard lock(box.mutex);
            box.queues[key(source, tag)].push_back(std::move(b));
        }
        box.cv.notify_all();
    }

    bool ready(int rank, int source, int tag) {
        mailbox& box = *boxes_[static_cast<std::size_t>(rank)];
        std::lock_guard lock(box.mutex);
        auto it = box.queues.find(key(source, tag));
        return it != box.queues.end() && !it->second.empty();
    }

    Buffer take(int rank, int source, int tag, std::chrono::nanoseconds timeout) {
        mailbox& box = *boxes_[static_cast<std::size_t>(rank)];
        std::unique_lock lock(box.mutex);
        auto& q = box.queues[key(source, tag)];
        // A neighbour usually posts within microseconds; going to sleep on the condition variable
        // and being woken costs more than that, so first give the CPU away a few times and look again.
        for (int k = 0; k < spin_turns && q.empty() && !aborted(); ++k) {
            lock.unlock();
            std::this_thread::yield();
            lock.lock();
        }
        const bool arrived = box.cv.wait_until(lock, detail::deadline_after(timeout), [&] { return !q.empty() || aborted(); });
        if (!q.empty()) {
            Buffer b = std::move(q.front());
            q.pop_front();
            return b;
        }
        if (arrived) throw aborted_error("paci::inprocess: aborted: " + abort_reason());
        throw timeout_error(rank, source, tag, action{}, timeout);
    }

    /// Every rank presents a fingerprint of its configuration; all must agree.
    void agree(int rank, std::uint64_t fingerprint, std::chrono::nanoseconds timeout) {
        std::unique_lock lock(agree_mutex_);
        if (round_prints_.size() != static_cast<std::size_t>(size_)) round_prints_.assign(static_cast<std::size_t>(size_), std::nullopt);
        round_prints_[static_cast<std::size_t>(rank)] = fingerprint;
        const std::uint64_t my_round = round_;
        if (++arrived_ == size_) {
            last_prints_ = round_prints_;
            round_prints_.assign(static_cast<std::size_t>(size_), std::nullopt);
            arrived_ = 0;
            ++round_;
            agree_cv_.notify_all();
        } else if (!agree_cv_.wait_until(lock, detail::deadline_after(timeout),
                                         [&] { return round_ != my_round || aborted(); })) {
            // Leave the round as if this rank had not come, so a later attempt starts clean.
            round_prints_[static_cast<std::size_t>(rank)].reset();
            --arrived_;
            int missing = 0;
            while (missing < size_ && (missing == rank || round_prints_[static_cast<std::size_t>(missing)].has_value()))
                ++missing;
            throw timeout_error(rank, missing, "the start-up agreement of the configuration", timeout);
        }
        if (round_ == my_round) throw aborted_error("paci::inprocess: aborted: " + abort_reason());
        std::vector<std::uint64_t> prints;
        prints.reserve(last_prints_.size());
        for (const auto& p : last_prints_) prints.push_back(p.value_or(0));
        detail::require_same_fingerprints(prints);
    }

    static constexpr int spin_turns = 64;
    int size_;
    std::vector<std::unique_ptr<mailbox>> boxes_;
    mutable std::mutex abort_mutex_;
    bool aborted_ = false;
    std::string reason_;
    std::mutex agree_mutex_;
    std::condition_variable agree_cv_;
    std::vector<std::optional<std::uint64_t>> round_prints_, last_prints_;
    int arrived_ = 0;
    std::uint64_t round_ = 0;
};

/// One rank's view of an `inprocess_world`: `isend` moves the buffer into the peer's mailbox at once
/// (the send is complete on return); `irecv` returns a request that takes the oldest buffer from that
/// (peer, tag) queue. Satisfies `communicator_for<inprocess_communicator<Buffer>, Buffer>`.
template <class Buffer>
class inprocess_communicator {
public:
    /// A send is complete when `isend` returns.
    struct send_request {
        [[nodiscard]] bool test() const noexcept { return true; }
        void wait(std::chrono::nanoseconds) const noexcept {}
    };
    /// A pending receive from (peer, tag).
    class recv_request {
    public:
        recv_request(inprocess_world<Buffer>& w, int rank, int peer, int tag) : world_(&w), rank_(rank), peer_(peer), tag_(tag) {}
        [[nodiscard]] bool test() { return world_->ready(rank_, peer_, tag_); }
        [[nodiscard]] Buffer wait(std::chrono::nanoseconds timeout) { return world_->take(rank_, peer_, tag_, timeout); }

    private:
        inprocess_world<Buffer>* world_;
        int rank_, peer_, tag_;
    };

    [[nodiscard]] int rank() const noexcept { return rank_; }
    [[nodiscard]] int size() const noexcept { return world_->size(); }
    send_request isend(int peer, int tag, Buffer b) {
        world_->post(rank_, peer, tag, std::move(b));
        return {};
    }
    recv_request irecv(int peer, int tag) { return recv_request(*world_, rank_, peer, tag); }
    void abort(const char* why) { world_->abort(why); }
    /// All ranks present `fingerprint`; throws `config_error` naming the first rank that differs.
    void agree(std::uint64_t fingerprint, std::chrono::nanoseconds timeout) { world_->agree(rank_, fingerprint, timeout); }

private:
    friend class inprocess_world<Buffer>;
    inprocess_communicator(inprocess_world<Buffer>& w, int rank) : world_(&w), rank_(rank) {}
    inprocess_world<Buffer>* world_;
    int rank_;
};

} // namespace paci
