/* NativeLSTM CUDA kernels: the layout and semantics of lstm.h, on device memory or through host copies.
 *
 * Device functions take a cudaStream_t as void* (so callers need no CUDA headers) and enqueue work on it without
 * synchronising; every pointer is device memory. The backward pass needs a workspace of B * n floats.
 * Host functions take host pointers, copy in, run on a stream of their own, copy out, and have the argument lists
 * of the CPU functions in lstm.h.
 * All return 0 on success, 1 on bad arguments, 2 on allocation failure, 3 on a CUDA or cuBLAS error; after an error
 * returnn_cuda_last_error() says what failed (thread-local, valid until the next call on this thread).
 */
#ifndef RETURNN_NATIVE_LSTM_CUDA_H
#define RETURNN_NATIVE_LSTM_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

int returnn_lstm_fwd_cuda(void* stream, int B, int T, int n, int direction, const float* z, const float* w_re,
                          const float* mask, const float* h0, const float* c0, float* y, float* h_final,
                          float* c_final, float* gates, float* cells, float* h_prev);

int returnn_lstm_bwd_cuda(void* stream, int B, int T, int n, int direction, const float* w_re, const float* mask,
                          const float* h0, const float* c0, const float* gates, const float* cells,
                          const float* h_prev, const float* dy, const float* dh_final, const float* dc_final,
                          float* dz, float* dw_re, float* dh0, float* dc0, float* workspace);

int returnn_lstm_fwd_cuda_host(int B, int T, int n, int direction, const float* z, const float* w_re,
                               const float* mask, const float* h0, const float* c0, float* y, float* h_final,
                               float* c_final, float* gates, float* cells, float* h_prev);

int returnn_lstm_bwd_cuda_host(int B, int T, int n, int direction, const float* w_re, const float* mask,
                               const float* h0, const float* c0, const float* gates, const float* cells,
                               const float* h_prev, const float* dy, const float* dh_final, const float* dc_final,
                               float* dz, float* dw_re, float* dh0, float* dc0);

const char* returnn_cuda_last_error(void);

/* Which GEMM the kernels use: "cuBLAS <path>" or "tiled GEMM (<why cuBLAS is not used>)". */
const char* returnn_cuda_gemm_backend(void);

/* CUDA runtime version the library was built with (e.g. 13000) and the driver's, 0 when it has none. */
int returnn_cuda_runtime_version(void);
int returnn_cuda_driver_version(void);

#ifdef __cplusplus
}
#endif

#endif
