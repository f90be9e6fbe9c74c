#pragma once
/// \file
/// Internals of `nccl_communicator`: one operation (`nccl_op`) and the queue of operations posted
/// but not yet handed to NCCL (`nccl_queue`), which pairs each send to self with its receive (NCCL
/// needs both in one group) and picks what goes to NCCL together, in posting order.

#include <paci/core/action.hpp>
#include <paci/core/error.hpp>
#include <paci/nccl/device_buffer.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace paci::detail {

/// One send or receive. `deferred`: posted, not yet handed to NCCL; `issued`: enqueued on its
/// channel's stream, with `buffer`'s event recorded right after it; `done`: the stream has passed
/// it; `failed`: never completed (the communicator was aborted).
struct nccl_op {
    enum class phase : std::uint8_t { deferred, issued, done, failed };
    bool send = false;
    int peer = 0;
    int tag = 0;
    int channel = 0;
    action at{};
    std::size_t bytes = 0;
    device_buffer buffer;
    phase state = phase::deferred;
};

/// The deferred operations of one rank, in posting order. `select_*` pick a batch (and mark what
/// it takes); `remove` drops the taken ones once their buffers are ready to go.
class nccl_queue {
public:
    using op_ptr = std::shared_ptr<nccl_op>;

    /// What goes to NCCL together: the operations and which queue positions they came from.
    struct selection {
        std::vector<op_ptr> batch;
        std::vector<bool> taken;
    };

    explicit nccl_queue(int rank) noexcept : rank_(rank) {}

    [[nodiscard]] bool empty() const noexcept { return ops_.empty(); }
    [[nodiscard]] const nccl_op* back() const noexcept { return ops_.empty() ? nullptr : ops_.back().get(); }
    void push(op_ptr op) { ops_.push_back(std::move(op)); }
    void clear() noexcept { ops_.clear(); }

    /// The deferred self operation `op` with its partner, if it has one yet (else an empty batch).
    [[nodiscard]] selection select_self(const nccl_op& op) const {
        selection out;
        const std::size_t i = position(&op);
        if (i == ops_.size()) return out;
        const std::size_t j = partner(i);
        if (j == ops_.size()) return out;
        out.taken.assign(ops_.size(), false);
        out.taken[i] = out.taken[j] = true;
        add_pair(out.batch, i, j);
        return out;
    }

    /// The operations posted up to and including `target`, in the order they were posted (NCCL
    /// matches the messages between two ranks on a channel in order), each self operation with its
    /// partner (the partner of a self `target` is included even when posted after it). Self
    /// operations with no partner yet (the target too) stay.
    [[nodiscard]] selection select_through(const nccl_op* target) const {
        selection out;
        std::size_t end = position(target);
        if (end == ops_.size()) return out;
        if (target->peer == rank_) {
            const std::size_t j = partner(end);
            if (j != ops_.size()) end = std::max(end, j);
        }
        out.taken.assign(ops_.size(), false);
        for (std::size_t i = 0; i <= end; ++i) {
            if (out.taken[i]) continue;
            if (ops_[i]->peer != rank_) {
                out.taken[i] = true;
                out.batch.push_back(ops_[i]);
                continue;
            }
            const std::size_t j = partner(i);
            if (j == ops_.size() || out.taken[j]) continue;
            out.taken[i] = out.taken[j] = true;
            add_pair(out.batch, i, j);
        }
        return out;
    }

    /// Removes the operations `s` took (the queue must not have changed since `s` was selected).
    void remove(const selection& s) {
        if (s.taken.empty()) return;
        std::size_t kept = 0;
        for (std::size_t i = 0; i < ops_.size(); ++i)
            if (!s.taken[i]) ops_[kept++] = std::move(ops_[i]);
        ops_.resize(kept);
    }

private:
    [[nodiscard]] std::size_t position(const nccl_op* op) const noexcept {
        for (std::size_t i = 0; i < ops_.size(); ++i)
            if (ops_[i].get() == op) return i;
        return ops_.size();
    }
    [[nodiscard]] bool self_send(std::size_t i, int tag) const noexcept {
        return ops_[i]->send && ops_[i]->peer == rank_ && ops_[i]->tag == tag;
    }
    [[nodiscard]] bool self_recv(std::size_t i, int tag) const noexcept {
        return !ops_[i]->send && ops_[i]->peer == rank_ && ops_[i]->tag == tag;
    }
    /// The deferred partner of the deferred self operation at `i`: the k-th send to self with a tag
    /// goes with the k-th receive from self with that tag.
    [[nodiscard]] std::size_t partner(std::size_t i) const noexcept {
        const nccl_op& op = *ops_[i];
        std::size_t k = 0;
        for (std::size_t j = 0; j < i; ++j) k += (op.send ? self_send(j, op.tag) : self_recv(j, op.tag)) ? 1U : 0U;
        for (std::size_t j = 0; j < ops_.size(); ++j)
            if ((op.send ? self_recv(j, op.tag) : self_send(j, op.tag)) && k-- == 0) return j;
        return ops_.size();
    }
    /// Appends the self pair (send, receive) at `i` and `j` to `batch`.
    void add_pair(std::vector<op_ptr>& batch, std::size_t i, std::size_t j) const {
        const std::size_t s = ops_[i]->send ? i : j, r = ops_[i]->send ? j : i;
        config_require(ops_[s]->bytes == ops_[r]->bytes, "nccl_communicator",
                       concat("bytes sent to self with tag ", ops_[s]->tag), ops_[s]->bytes,
                       concat("must equal the receive size (", ops_[r]->bytes, ")"));
        batch.push_back(ops_[s]);
        batch.push_back(ops_[r]);
    }

    int rank_;
    std::vector<op_ptr> ops_;
};

} // namespace paci::detail
