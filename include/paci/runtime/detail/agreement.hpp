#pragma once
/// \file
/// Internals shared by the transports: the check of the start-up agreement. Every transport
/// gathers one fingerprint per rank (in-process: under a mutex; MPI: `MPI_Iallgather`; NCCL:
/// `ncclAllGather`) and then calls `require_same_fingerprints`, so every transport reports a
/// mismatch with the same message.

#include <paci/core/error.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace paci::detail {

/// Throws `config_error("paci::executor: configuration of rank (R) differs from rank 0's (a
/// different policy, stage count or micro-batch count; fingerprints F_R and F_0)")` (the house
/// form `paci::<api>: <what> (<value>) <requirement>`) for the first rank `R` whose fingerprint
/// differs from rank 0's; returns when all agree (or `prints` is empty).
inline void require_same_fingerprints(std::span<const std::uint64_t> prints) {
    for (std::size_t r = 1; r < prints.size(); ++r)
        if (prints[r] != prints[0])
            config_fail("executor", "configuration of rank", r,
                        concat("differs from rank 0's (a different policy, stage count or micro-batch count; "
                               "fingerprints ",
                               prints[r], " and ", prints[0], ")"));
}

} // namespace paci::detail
