/* NativeLSTM kernels: one direction over a whole padded batch, RETURNN gate layout.
 *
 * Layout (all float32, row-major, batch-major like the RecUnit protocol):
 *   z      (B, T, 4n)  input projection x W + b; 4n blocks [cell input, input gate, forget gate, output gate]
 *   w_re   (n, 4n)     recurrent weights
 *   mask   (B, T)      1 = frame present; masked frames keep the previous state and output zeros
 *   h0, c0 (B, n)      initial state
 *   y      (B, T, n)   output in the original time order
 *   gates  (B, T, 4n)  workspace: gate activations (for the backward pass)
 *   cells  (B, T, n)   workspace: cell state after the step at frame t
 *   h_prev (B, T, n)   workspace: hidden state before the step at frame t
 * direction +1 runs t = 0..T-1, -1 runs t = T-1..0.
 * Functions return 0 on success, nonzero on bad arguments or allocation failure.
 */
#ifndef RETURNN_NATIVE_LSTM_H
#define RETURNN_NATIVE_LSTM_H

#ifdef __cplusplus
extern "C" {
#endif

int returnn_lstm_fwd_cpu(int B, int T, int n, int direction, const float* z, const float* w_re, const float* mask,
                         const float* h0, const float* c0, float* y, float* h_final, float* c_final, float* gates,
                         float* cells, float* h_prev);

int returnn_lstm_bwd_cpu(int B, int T, int n, int direction, const float* w_re, const float* mask, const float* h0,
                         const float* c0, const float* gates, const float* cells, const float* h_prev,
                         const float* dy, const float* dh_final, const float* dc_final, float* dz, float* dw_re,
                         float* dh0, float* dc0);

/* Two calls at the same time (e.g. a BLSTM's two directions), sharing the kernels' threads: the argument lists of
 * two forward (backward) calls one after the other. Returns the first nonzero code of the two. */
int returnn_lstm_fwd_pair_cpu(int B, int T, int n, int direction, const float* z, const float* w_re,
                              const float* mask, const float* h0, const float* c0, float* y, float* h_final,
                              float* c_final, float* gates, float* cells, float* h_prev, int B2, int T2, int n2,
                              int direction2, const float* z2, const float* w_re2, const float* mask2,
                              const float* h02, const float* c02, float* y2, float* h_final2, float* c_final2,
                              float* gates2, float* cells2, float* h_prev2);

int returnn_lstm_bwd_pair_cpu(int B, int T, int n, int direction, const float* w_re, const float* mask,
                              const float* h0, const float* c0, const float* gates, const float* cells,
                              const float* h_prev, const float* dy, const float* dh_final, const float* dc_final,
                              float* dz, float* dw_re, float* dh0, float* dc0, int B2, int T2, int n2,
                              int direction2, const float* w_re2, const float* mask2, const float* h02,
                              const float* c02, const float* gates2, const float* cells2, const float* h_prev2,
                              const float* dy2, const float* dh_final2, const float* dc_final2, float* dz2,
                              float* dw_re2, float* dh02, float* dc02);

/* c (M, N) = op(a) x op(b), all float32 row-major: op(a) (M, K) is a, or a (K, M) transposed; op(b) (K, N) is b,
 * or b (N, K) transposed. The input projection's GEMMs; under ISA 3 (AMX) on split-bf16 tiles for large shapes. */
int returnn_matmul_cpu(int M, int N, int K, const float* a, int transpose_a, const float* b, int transpose_b,
                       float* c);

void returnn_native_set_num_threads(int num_threads);
int returnn_native_get_num_threads(void);

/* Step GEMM implementation: 0 = best available, 1 = generic (a BLAS sgemm per step), 2 = AVX-512 packed
 * micro-kernel, 3 = AMX tiles with split-bf16 operands (also the weight gradient; layers under 256 units keep
 * the AVX-512 kernel, which is faster for them). set returns nonzero when the
 * choice is not compiled in (the library is built for the host CPU) or, for AMX, the OS refuses the tile state. */
int returnn_native_set_isa(int isa);
int returnn_native_get_isa(void);

#ifdef __cplusplus
}
#endif

#endif
