#pragma once
/// \file
/// Errors of the NCCL transport: `cuda_error` and `nccl_error`, both `transport_error`s that carry
/// the failing status and its text. Part of the optional `paci::nccl` CMake component.

#include <paci/core/error.hpp>
#include <paci/runtime/errors.hpp>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>
#include <string_view>
#include <utility>

#if !defined(NCCL_VERSION_CODE) || NCCL_VERSION_CODE < NCCL_VERSION(2, 18, 0)
#error "paci::nccl needs NCCL >= 2.18 (non-blocking communicators, ncclCommSplit, ncclCommFinalize)"
#endif

namespace paci {

/// A CUDA runtime call failed. `code()` (from `transport_error`) is the `cudaError_t` as an int;
/// `status()` is the `cudaError_t` itself. Message: `paci::<api>: <call> failed: <cudaGetErrorString>
/// (cuda error <n>)`.
class cuda_error : public transport_error {
public:
    cuda_error(std::string message, cudaError_t status)
        : transport_error(std::move(message), static_cast<int>(status)), status_(status) {}
    [[nodiscard]] cudaError_t status() const noexcept { return status_; }

private:
    cudaError_t status_;
};

/// An NCCL call failed, or the communicator reported an asynchronous error. `code()` is the
/// `ncclResult_t` as an int; `status()` is the `ncclResult_t` itself. Message: `paci::<api>: <call>
/// failed: <ncclGetErrorString> (nccl error <n>): <ncclGetLastError>`.
class nccl_error : public transport_error {
public:
    nccl_error(std::string message, ncclResult_t status)
        : transport_error(std::move(message), static_cast<int>(status)), status_(status) {}
    [[nodiscard]] ncclResult_t status() const noexcept { return status_; }

private:
    ncclResult_t status_;
};

namespace detail {

/// Throws `cuda_error("paci::<api>: <what...> failed: <text> (cuda error <n>)")` unless `status` is
/// `cudaSuccess`; the message is built only on failure.
template <class... What>
void cuda_check(cudaError_t status, std::string_view api, const What&... what) {
    if (status == cudaSuccess) return;
    throw cuda_error(concat("paci::", api, ": ", what..., " failed: ", cudaGetErrorString(status), " (cuda error ",
                            static_cast<int>(status), ")"),
                     status);
}

/// The text of an NCCL failure: `<ncclGetErrorString> (nccl error <n>)`, then NCCL's last error
/// message when it has one (it names the peer, the transport or the CUDA call that failed).
[[nodiscard]] inline std::string nccl_status_text(ncclResult_t status, ncclComm_t comm) {
    std::string text = concat(ncclGetErrorString(status), " (nccl error ", static_cast<int>(status), ")");
    const char* last = ncclGetLastError(comm);
    if (last != nullptr && *last != '\0') text = concat(text, ": ", last);
    return text;
}

/// Throws `nccl_error("paci::<api>: <what...> failed: <text>")` unless `status` is `ncclSuccess`.
template <class... What>
void nccl_check(ncclResult_t status, ncclComm_t comm, std::string_view api, const What&... what) {
    if (status == ncclSuccess) return;
    throw nccl_error(concat("paci::", api, ": ", what..., " failed: ", nccl_status_text(status, comm)), status);
}

} // namespace detail
} // namespace paci
