// NativeLSTM CUDA kernels: same layout and semantics as lstm_cpu.cc (see lstm.h), device pointers.
// Per step one GEMM (cuBLAS when built with -DRETURNN_HAVE_CUBLAS, else a tiled shared-memory GEMM) and one
// fused gate kernel; the recurrent weight gradient is one GEMM after the time loop.
#include <cuda_runtime.h>

#include <cstring>

#ifdef RETURNN_HAVE_CUBLAS
#include <cublas_v2.h>
#endif

namespace {

constexpr int kTile = 16;

// Row-major C (M x N, ldc) = alpha * op(A) * op(B) + beta * C; op(A) is M x K, op(B) is K x N.
__global__ void gemm_tiled(int M, int N, int K, float alpha, const float* A, int lda, bool ta, const float* B, int ldb,
                           bool tb, float beta, float* C, int ldc) {
  __shared__ float sa[kTile][kTile + 1];
  __shared__ float sb[kTile][kTile + 1];
  const int row = blockIdx.y * kTile + threadIdx.y, col = blockIdx.x * kTile + threadIdx.x;
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += kTile) {
    const int ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
    sa[threadIdx.y][threadIdx.x] = (row < M && ka < K) ? (ta ? A[(long)ka * lda + row] : A[(long)row * lda + ka]) : 0.f;
    sb[threadIdx.y][threadIdx.x] = (kb < K && col < N) ? (tb ? B[(long)col * ldb + kb] : B[(long)kb * ldb + col]) : 0.f;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kTile; ++k) acc += sa[threadIdx.y][k] * sb[k][threadIdx.x];
    __syncthreads();
  }
  if (row < M && col < N) {
    float* c = C + (long)row * ldc + col;
    *c = alpha * acc + (beta == 0.f ? 0.f : beta * *c);
  }
}

#ifdef RETURNN_HAVE_CUBLAS
cublasHandle_t handle() {
  static cublasHandle_t h = nullptr;
  if (!h) cublasCreate(&h);
  return h;
}
#endif

int gemm(cudaStream_t stream, bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
         const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return 0;
#ifdef RETURNN_HAVE_CUBLAS
  // row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T on the same buffers
  cublasSetStream(handle(), stream);
  return cublasSgemm(handle(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, ldb,
                     A, lda, &beta, C, ldc) == CUBLAS_STATUS_SUCCESS ? 0 : 3;
#else
  dim3 block(kTile, kTile), grid((N + kTile - 1) / kTile, (M + kTile - 1) / kTile);
  gemm_tiled<<<grid, block, 0, stream>>>(M, N, K, alpha, A, lda, ta, B, ldb, tb, beta, C, ldc);
  return cudaGetLastError() == cudaSuccess ? 0 : 3;
#endif
}

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + __expf(-x)); }

// One thread per (b, j): gate activations, new cell and hidden state of frame t.
__global__ void gate_forward(int B, int T, int n, int t, int direction, bool first, bool last, const float* z,
                             float* gates, const float* mask, const float* c0, float* cells, float* h_prev, float* y,
                             float* h_final) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= B * n) return;
  const int b = idx / n, j = idx % n;
  const long bt = (long)b * T + t, n4 = 4L * n;
  const float cp = first ? c0[(long)b * n + j] : cells[((long)b * T + t - direction) * n + j];
  const float hp = h_prev[bt * n + j];
  float* h_out = last ? h_final + (long)b * n + j : h_prev + (bt + direction) * n + j;
  if (mask[bt] > 0.f) {
    float* g = gates + bt * n4;
    const float* zz = z + bt * n4;
    const float a = tanhf(g[j] + zz[j]), i = sigmoid(g[n + j] + zz[n + j]);
    const float f = sigmoid(g[2 * n + j] + zz[2 * n + j]), o = sigmoid(g[3 * n + j] + zz[3 * n + j]);
    const float c = f * cp + i * a, h = o * tanhf(c);
    g[j] = a;
    g[n + j] = i;
    g[2 * n + j] = f;
    g[3 * n + j] = o;
    cells[bt * n + j] = c;
    *h_out = h;
    y[bt * n + j] = h;
  } else {
    cells[bt * n + j] = cp;
    *h_out = hp;
    y[bt * n + j] = 0.f;
  }
}

// One thread per (b, j): pre-activation gradients of frame t; carries dc.
__global__ void gate_backward(int B, int T, int n, int t, int direction, bool first, const float* gates,
                              const float* cells, const float* c0, const float* mask, const float* dh, const float* dy,
                              float* dc, float* dz) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= B * n) return;
  const int b = idx / n, j = idx % n;
  const long bt = (long)b * T + t, n4 = 4L * n;
  float* d = dz + bt * n4;
  if (!(mask[bt] > 0.f)) {
    d[j] = d[n + j] = d[2 * n + j] = d[3 * n + j] = 0.f;
    return;
  }
  const float* g = gates + bt * n4;
  const float a = g[j], i = g[n + j], f = g[2 * n + j], o = g[3 * n + j];
  const float cp = first ? c0[(long)b * n + j] : cells[((long)b * T + t - direction) * n + j];
  const float tc = tanhf(cells[bt * n + j]);
  const float dh_tot = dh[(long)b * n + j] + dy[bt * n + j];
  const float dc_tot = dc[(long)b * n + j] + dh_tot * o * (1.f - tc * tc);
  d[j] = dc_tot * i * (1.f - a * a);
  d[n + j] = dc_tot * a * i * (1.f - i);
  d[2 * n + j] = dc_tot * cp * f * (1.f - f);
  d[3 * n + j] = dh_tot * tc * o * (1.f - o);
  dc[(long)b * n + j] = dc_tot * f;
}

// dh = tmp for present frames; masked frames keep the carried dh.
__global__ void take_dh(int B, int T, int n, int t, const float* mask, const float* tmp, float* dh) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx < B * n && mask[(long)(idx / n) * T + t] > 0.f) dh[idx] = tmp[idx];
}

__global__ void copy_rows(int B, int n, const float* src, long src_stride, float* dst, long dst_stride) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx < B * n) dst[(idx / n) * dst_stride + idx % n] = src[(idx / n) * src_stride + idx % n];
}

inline int blocks(long count) { return (int)((count + 255) / 256); }

}  // namespace

extern "C" int returnn_lstm_fwd_cuda(void* stream_ptr, int B, int T, int n, int direction, const float* z,
                                     const float* w_re, const float* mask, const float* h0, const float* c0, float* y,
                                     float* h_final, float* c_final, float* gates, float* cells, float* h_prev) {
  if (B < 0 || T < 0 || n <= 0 || (direction != 1 && direction != -1)) return 1;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const long n4 = 4L * n;
  if (B == 0) return 0;
  if (T == 0) {
    cudaMemcpyAsync(h_final, h0, sizeof(float) * B * n, cudaMemcpyDeviceToDevice, stream);
    cudaMemcpyAsync(c_final, c0, sizeof(float) * B * n, cudaMemcpyDeviceToDevice, stream);
    return cudaGetLastError() == cudaSuccess ? 0 : 3;
  }
  const int t_first = direction > 0 ? 0 : T - 1, t_end = direction > 0 ? T - 1 : 0;
  copy_rows<<<blocks((long)B * n), 256, 0, stream>>>(B, n, h0, n, h_prev + (long)t_first * n, (long)T * n);
  for (int s = 0; s < T; ++s) {
    const int t = direction > 0 ? s : T - 1 - s;
    int rc = gemm(stream, false, false, B, (int)n4, n, 1.f, h_prev + (long)t * n, T * n, w_re, (int)n4, 0.f,
                  gates + t * n4, (int)(T * n4));
    if (rc) return rc;
    gate_forward<<<blocks((long)B * n), 256, 0, stream>>>(B, T, n, t, direction, s == 0, s == T - 1, z, gates, mask,
                                                          c0, cells, h_prev, y, h_final);
  }
  copy_rows<<<blocks((long)B * n), 256, 0, stream>>>(B, n, cells + (long)t_end * n, (long)T * n, c_final, n);
  return cudaGetLastError() == cudaSuccess ? 0 : 3;
}

extern "C" int returnn_lstm_bwd_cuda(void* stream_ptr, int B, int T, int n, int direction, const float* w_re,
                                     const float* mask, const float* h0, const float* c0, const float* gates,
                                     const float* cells, const float* h_prev, const float* dy, const float* dh_final,
                                     const float* dc_final, float* dz, float* dw_re, float* dh0, float* dc0) {
  (void)h0;
  if (B < 0 || T < 0 || n <= 0 || (direction != 1 && direction != -1)) return 1;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const long n4 = 4L * n;
  cudaMemcpyAsync(dh0, dh_final, sizeof(float) * B * n, cudaMemcpyDeviceToDevice, stream);
  cudaMemcpyAsync(dc0, dc_final, sizeof(float) * B * n, cudaMemcpyDeviceToDevice, stream);
  if (T == 0 || B == 0) {
    cudaMemsetAsync(dw_re, 0, sizeof(float) * n * n4, stream);
    return cudaGetLastError() == cudaSuccess ? 0 : 3;
  }
  float* tmp = nullptr;
  if (cudaMalloc(&tmp, sizeof(float) * B * n) != cudaSuccess) return 2;
  int rc = 0;
  for (int s = T - 1; s >= 0 && !rc; --s) {
    const int t = direction > 0 ? s : T - 1 - s;
    gate_backward<<<blocks((long)B * n), 256, 0, stream>>>(B, T, n, t, direction, s == 0, gates, cells, c0, mask,
                                                           dh0, dy, dc0, dz);
    rc = gemm(stream, false, true, B, n, (int)n4, 1.f, dz + t * n4, (int)(T * n4), w_re, (int)n4, 0.f, tmp, n);
    take_dh<<<blocks((long)B * n), 256, 0, stream>>>(B, T, n, t, mask, tmp, dh0);
  }
  if (!rc) rc = gemm(stream, true, false, n, (int)n4, B * T, 1.f, h_prev, n, dz, (int)n4, 0.f, dw_re, (int)n4);
  cudaStreamSynchronize(stream);  // tmp is freed below
  cudaFree(tmp);
  if (!rc && cudaGetLastError() != cudaSuccess) rc = 3;
  return rc;
}

// Host-memory front end (copies in, runs on the default stream, copies out): used by tests and the NumPy API.
namespace {
struct DeviceBuffers {
  float* ptrs[32] = {};
  int count = 0;
  ~DeviceBuffers() {
    for (int i = 0; i < count; ++i) cudaFree(ptrs[i]);
  }
  float* alloc(size_t floats, const float* host = nullptr) {
    float* p = nullptr;
    if (cudaMalloc(&p, sizeof(float) * (floats ? floats : 1)) != cudaSuccess) return nullptr;
    ptrs[count++] = p;
    if (host && floats) cudaMemcpy(p, host, sizeof(float) * floats, cudaMemcpyHostToDevice);
    return p;
  }
};
}  // namespace

extern "C" int returnn_lstm_fwd_cuda_host(int B, int T, int n, int direction, const float* z, const float* w_re,
                                          const float* mask, const float* h0, const float* c0, float* y,
                                          float* h_final, float* c_final, float* gates, float* cells, float* h_prev) {
  DeviceBuffers d;
  const size_t btn = (size_t)B * T * n, bn = (size_t)B * n;
  float* dz = d.alloc(btn * 4, z);
  float* dw = d.alloc((size_t)n * 4 * n, w_re);
  float* dm = d.alloc((size_t)B * T, mask);
  float* dh0 = d.alloc(bn, h0);
  float* dc0 = d.alloc(bn, c0);
  float *dy = d.alloc(btn), *dhf = d.alloc(bn), *dcf = d.alloc(bn), *dg = d.alloc(btn * 4), *dcs = d.alloc(btn),
        *dhp = d.alloc(btn);
  if (!dhp) return 2;
  int rc = returnn_lstm_fwd_cuda(nullptr, B, T, n, direction, dz, dw, dm, dh0, dc0, dy, dhf, dcf, dg, dcs, dhp);
  if (rc) return rc;
  const float* src[6] = {dy, dhf, dcf, dg, dcs, dhp};
  float* dst[6] = {y, h_final, c_final, gates, cells, h_prev};
  const size_t sizes[6] = {btn, bn, bn, btn * 4, btn, btn};
  for (int i = 0; i < 6; ++i) cudaMemcpy(dst[i], src[i], sizeof(float) * sizes[i], cudaMemcpyDeviceToHost);
  return cudaGetLastError() == cudaSuccess ? 0 : 3;
}

extern "C" int returnn_lstm_bwd_cuda_host(int B, int T, int n, int direction, const float* w_re, const float* mask,
                                          const float* h0, const float* c0, const float* gates, const float* cells,
                                          const float* h_prev, const float* dy, const float* dh_final,
                                          const float* dc_final, float* dz, float* dw_re, float* dh0, float* dc0) {
  DeviceBuffers d;
  const size_t btn = (size_t)B * T * n, bn = (size_t)B * n;
  float* w = d.alloc((size_t)n * 4 * n, w_re);
  float* m = d.alloc((size_t)B * T, mask);
  float *h0d = d.alloc(bn, h0), *c0d = d.alloc(bn, c0), *g = d.alloc(btn * 4, gates), *cs = d.alloc(btn, cells);
  float *hp = d.alloc(btn, h_prev), *dyd = d.alloc(btn, dy), *dhf = d.alloc(bn, dh_final), *dcf = d.alloc(bn, dc_final);
  float *dzd = d.alloc(btn * 4), *dwd = d.alloc((size_t)n * 4 * n), *dh0d = d.alloc(bn), *dc0d = d.alloc(bn);
  if (!dc0d) return 2;
  int rc = returnn_lstm_bwd_cuda(nullptr, B, T, n, direction, w, m, h0d, c0d, g, cs, hp, dyd, dhf, dcf, dzd, dwd, dh0d,
                                 dc0d);
  if (rc) return rc;
  const float* src[4] = {dzd, dwd, dh0d, dc0d};
  float* dst[4] = {dz, dw_re, dh0, dc0};
  const size_t sizes[4] = {btn * 4, (size_t)n * 4 * n, bn, bn};
  for (int i = 0; i < 4; ++i) cudaMemcpy(dst[i], src[i], sizeof(float) * sizes[i], cudaMemcpyDeviceToHost);
  return cudaGetLastError() == cudaSuccess ? 0 : 3;
}
