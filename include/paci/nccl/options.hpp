#pragma once
/// \file
/// `nccl_options` and the ring map of channels: how an `nccl_communicator` spreads its messages
/// over NCCL communicators. Part of the optional `paci::nccl` CMake component; included by
/// <paci/nccl/communicator.hpp>.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>

namespace paci {

/// How an `nccl_communicator` creates its channels beyond the first (channel 0 always comes from
/// the unique id given to the constructor).
enum class nccl_channel_setup : std::uint8_t {
    /// `ncclCommSplit` of channel 0 (the default): no further bootstrap connections.
    split,
    /// `ncclCommInitRankConfig` per channel, each with a unique id of its own that rank 0 creates
    /// and broadcasts over channel 0 (`ncclBroadcast`): the path channel 0 itself takes, for NCCL
    /// builds or networks where splitting misbehaves.
    init_rank,
};

/// How an `nccl_communicator` spreads messages over NCCL communicators, and how it is set up and
/// shut down. Set members by name: `paci::nccl_options o; o.setup_timeout = std::chrono::seconds(30);`
/// (or designated initializers).
struct nccl_options {
    /// Longest time creating the NCCL communicators, handing operations to NCCL (the first one with
    /// a peer connects to it, which waits for that peer) and draining at destruction may take before
    /// the communicator is aborted.
    std::chrono::nanoseconds setup_timeout = std::chrono::minutes(5);
    /// How many NCCL communicators ("channels", each with its own stream) carry the messages, and
    /// which channel carries a message from rank `from` to rank `to` with `tag` (the same function
    /// on every rank). NCCL runs the operations of one communicator one after the other, so a send
    /// whose receiver is not ready yet holds up everything behind it on its channel.
    ///
    /// Default (`channels = 0`, no `channel_of`): the ring map, `nccl_ring_channel`: one channel per
    /// direction and colour of ring neighbours (2 for two ranks, 4 for an even world, 6 for an odd
    /// one), so each rank's traffic with its predecessor and successor (all the executor's layouts
    /// have) travels on four independent channels and a send holds up only later sends on the same
    /// edge, which the peer receives in that order anyway: the semantics of MPI's non-blocking
    /// sends. `channels = 1`: one NCCL communicator for everything (a send then holds up every later
    /// operation; pair opposite-direction transfers with `start_group`/`end_group`). A `channel_of`
    /// of one's own needs `channels >= 1`.
    int channels = 0;
    std::function<int(int from, int to, int tag)> channel_of;
    /// How channels 1, 2, ... are created (the same on every rank).
    nccl_channel_setup channel_setup = nccl_channel_setup::split;
    /// Hand a receive to NCCL when it is posted (`irecv`), so the data moves while this rank
    /// computes, rather than when it is first tested or waited on. Empty: early with the ring map,
    /// otherwise not (a receive issued early on a channel that also carries this rank's sends would
    /// hold them up).
    std::optional<bool> early_receives;
    /// A blocking NCCL communicator (`ncclConfig_t::blocking = 1`). The default, non-blocking, keeps
    /// initialization and connection setup under `setup_timeout` and lets `abort` interrupt them; a
    /// blocking communicator may wait without bound inside NCCL there.
    bool blocking = false;
    /// Give the communication streams the device's highest priority, so transfers are not queued
    /// behind the stages' kernels.
    bool high_priority_streams = true;
    /// Buffers of completed sends kept for reuse as receive buffers of the same size (saves a
    /// `cudaMalloc` and a device-synchronizing `cudaFree` per message in steady state).
    std::size_t pool_limit = 8;
    /// Called once, by the first `abort(why)`, after the NCCL communicators have been aborted: the
    /// place to stop the other processes at once (`MPI_Abort`), which otherwise find out when their
    /// own waits time out. Must not throw.
    std::function<void(const char* why)> on_abort;
};

/// The number of channels of the ring map for a world of `size` ranks: 1, 2 for two ranks, 4 for
/// an even size, 6 for an odd one.
[[nodiscard]] constexpr int nccl_ring_channels(int size) noexcept {
    return size <= 1 ? 1 : size == 2 ? 2 : size % 2 == 0 ? 4 : 6;
}

/// The ring map: the channel of a message from `from` to `to` in a world of `size` ranks. Ranks are
/// coloured so that ring neighbours differ (parity, and a third colour for the last rank of an odd
/// ring); the channel is (colour of the sender, whether `to` is its successor). At every rank the
/// four edges to and from its two neighbours get four different channels. Messages to self, and
/// to ranks that are not neighbours, share a channel with the sends to the predecessor.
[[nodiscard]] constexpr int nccl_ring_channel(int from, int to, int size) noexcept {
    if (size <= 1) return 0;
    if (size == 2) return from;
    const int colour = (size % 2 == 1 && from == size - 1) ? 2 : from % 2;
    const bool successor = to == (from + 1) % size && to != from;
    return 2 * colour + (successor ? 0 : 1);
}

// The ring map gives the four edges at every rank four different channels.
static_assert(nccl_ring_channel(0, 1, 4) != nccl_ring_channel(0, 3, 4) &&
              nccl_ring_channel(0, 1, 4) != nccl_ring_channel(3, 0, 4) &&
              nccl_ring_channel(0, 1, 4) != nccl_ring_channel(1, 0, 4) &&
              nccl_ring_channel(0, 3, 4) != nccl_ring_channel(3, 0, 4) &&
              nccl_ring_channel(0, 3, 4) != nccl_ring_channel(1, 0, 4) &&
              nccl_ring_channel(3, 0, 4) != nccl_ring_channel(1, 0, 4));
static_assert(nccl_ring_channel(0, 1, 2) != nccl_ring_channel(1, 0, 2));

} // namespace paci
