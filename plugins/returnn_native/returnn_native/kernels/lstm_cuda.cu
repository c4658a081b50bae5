// NativeLSTM CUDA kernels: same layout and semantics as lstm_cpu.cc (see lstm.h, lstm_cuda.h), device pointers.
// Per step one GEMM (cuBLAS when the library named by RETURNN_CUBLAS_LIBRARY loads, else a tiled shared-memory GEMM)
// and one fused gate kernel; the recurrent weight gradient is one GEMM after the time loop. The gate math uses the
// accurate expf/tanhf (no fast-math intrinsics), so results match the CPU kernel within float rounding.
//
// Isolation: this library links the CUDA runtime statically with its symbols hidden and opens cuBLAS itself with
// RTLD_LOCAL. TensorFlow loads its libtensorflow_framework with RTLD_GLOBAL, and that exports cuda* and cublas*
// stubs bound to TF's own (possibly older) CUDA; plain dynamic symbols here would silently resolve to those.
#include "lstm_cuda.h"

#include <cuda_runtime.h>
#include <dlfcn.h>

#include <map>
#include <mutex>
#include <string>

namespace {

constexpr int kTile = 16;
constexpr int kThreads = 256;

thread_local std::string g_error;

// Records what failed (for returnn_cuda_last_error) and returns the error code.
int fail(int code, const char* what, cudaError_t err = cudaSuccess) {
  g_error = what;
  if (err != cudaSuccess) g_error += std::string(": ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
  return code;
}

int check_launch(const char* what) {
  cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? 0 : fail(3, what, err);
}

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

// The few cuBLAS entry points used, with the types of cublas_api.h (handles are opaque, enums are int).
struct Cublas {
  using Create = int (*)(void**);
  using SetStream = int (*)(void*, cudaStream_t);
  using Sgemm = int (*)(void*, int, int, int, int, int, const float*, const float*, int, const float*, int,
                        const float*, float*, int);
  using StatusString = const char* (*)(int);
  Create create = nullptr;
  SetStream set_stream = nullptr;
  Sgemm sgemm = nullptr;
  StatusString status_string = nullptr;
  std::string why_not = "not built with a cuBLAS library";
};

const Cublas& cublas() {
  static Cublas lib;
  static std::once_flag once;
  std::call_once(once, [] {
#ifdef RETURNN_CUBLAS_LIBRARY
    void* h = dlopen(RETURNN_CUBLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* err = dlerror();
      lib.why_not = std::string("cannot load ") + RETURNN_CUBLAS_LIBRARY + ": " + (err ? err : "?");
      return;
    }
    lib.create = reinterpret_cast<Cublas::Create>(dlsym(h, "cublasCreate_v2"));
    lib.set_stream = reinterpret_cast<Cublas::SetStream>(dlsym(h, "cublasSetStream_v2"));
    lib.sgemm = reinterpret_cast<Cublas::Sgemm>(dlsym(h, "cublasSgemm_v2"));
    lib.status_string = reinterpret_cast<Cublas::StatusString>(dlsym(h, "cublasGetStatusString"));
    if (!lib.create || !lib.set_stream || !lib.sgemm) {
      lib.sgemm = nullptr;
      lib.why_not = std::string(RETURNN_CUBLAS_LIBRARY) + " lacks cublasCreate_v2/cublasSetStream_v2/cublasSgemm_v2";
    } else {
      lib.why_not.clear();
    }
#endif
  });
  return lib;
}

// One handle per thread and device: a handle belongs to the device current at its creation, and setting a
// shared handle's stream from several threads (TF runs ops concurrently) would race. Handles live as long as
// the process (destroying them at thread exit can run after the driver shut down).
void* cublas_handle() {
  thread_local std::map<int, void*> handles;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return nullptr;
  void*& h = handles[device];
  if (!h && cublas().create(&h) != 0) h = nullptr;
  return h;
}

int gemm(cudaStream_t stream, bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
         const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return 0;
  const Cublas& lib = cublas();
  if (lib.sgemm) {
    void* h = cublas_handle();
    if (!h) return fail(3, "cublasCreate failed");
    if (lib.set_stream(h, stream) != 0) return fail(3, "cublasSetStream failed");
    // row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T on the same buffers (1 = CUBLAS_OP_T)
    const int st = lib.sgemm(h, tb ? 1 : 0, ta ? 1 : 0, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc);
    if (st != 0) {
      g_error = std::string("cublasSgemm failed: ") + (lib.status_string ? lib.status_string(st) : std::to_string(st));
      return 3;
    }
    return 0;
  }
  dim3 block(kTile, kTile), grid((N + kTile - 1) / kTile, (M + kTile - 1) / kTile);
  gemm_tiled<<<grid, block, 0, stream>>>(M, N, K, alpha, A, lda, ta, B, ldb, tb, beta, C, ldc);
  return check_launch("gemm_tiled launch");
}

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

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

// One thread per (b, j): pre-activation gradients of frame t; carries dc. Masked frames get dz = 0 and pass the
// carried dh and dc through unchanged.
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

inline int blocks(long count) { return (int)((count + kThreads - 1) / kThreads); }

// Checks the sizes of an entry point's call (and clears the error text of an earlier call).
bool bad_args(int B, int T, int n, int direction) {
  g_error.clear();
  const long limit = 1L << 31;  // leading dimensions, thread indices and GEMM sizes are int
  if (B >= 0 && T >= 0 && n > 0 && (direction == 1 || direction == -1) && 4L * T * n < limit && 4L * B * n < limit &&
      (long)B * T < limit)
    return false;
  fail(1, "bad arguments (need B, T >= 0, n > 0, direction 1 or -1, and 4*T*n, 4*B*n, B*T below 2^31)");
  return true;
}

}  // namespace

extern "C" int returnn_lstm_fwd_cuda(void* stream_ptr, int B, int T, int n, int direction, const float* z,
                                     const float* w_re, const float* mask, const float* h0, const float* c0, float* y,
                                     float* h_final, float* c_final, float* gates, float* cells, float* h_prev) {
  if (bad_args(B, T, n, direction)) return 1;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const long n4 = 4L * n;
  if (B == 0) return 0;
  if (T == 0) {
    cudaError_t err = cudaMemcpyAsync(h_final, h0, sizeof(float) * B * n, cudaMemcpyDeviceToDevice, stream);
    if (err == cudaSuccess)
      err = cudaMemcpyAsync(c_final, c0, sizeof(float) * B * n, cudaMemcpyDeviceToDevice, stream);
    return err == cudaSuccess ? 0 : fail(3, "NativeLstm forward: copying the initial state", err);
  }
  const int t_first = direction > 0 ? 0 : T - 1, t_end = direction > 0 ? T - 1 : 0;
  copy_rows<<<blocks((long)B * n), kThreads, 0, stream>>>(B, n, h0, n, h_prev + (long)t_first * n, (long)T * n);
  if (int rc = check_launch("NativeLstm forward: copy_rows launch")) return rc;
  for (int s = 0; s < T; ++s) {
    const int t = direction > 0 ? s : T - 1 - s;
    // gates[:, t] = h_prev[:, t] @ w_re, then the gate kernel adds z and applies the activations in place
    if (int rc = gemm(stream, false, false, B, (int)n4, n, 1.f, h_prev + (long)t * n, T * n, w_re, (int)n4, 0.f,
                      gates + t * n4, (int)(T * n4)))
      return rc;
    gate_forward<<<blocks((long)B * n), kThreads, 0, stream>>>(B, T, n, t, direction, s == 0, s == T - 1, z, gates,
                                                               mask, c0, cells, h_prev, y, h_final);
    if (int rc = check_launch("NativeLstm forward: gate_forward launch")) return rc;
  }
  copy_rows<<<blocks((long)B * n), kThreads, 0, stream>>>(B, n, cells + (long)t_end * n, (long)T * n, c_final, n);
  return check_launch("NativeLstm forward: copy_rows launch");
}

extern "C" int returnn_lstm_bwd_cuda(void* stream_ptr, int B, int T, int n, int direction, const float* w_re,
                                     const float* mask, const float* h0, const float* c0, const float* gates,
                                     const float* cells, const float* h_prev, const float* dy, const float* dh_final,
                                     const float* dc_final, float* dz, float* dw_re, float* dh0, float* dc0,
                                     float* workspace) {
  (void)h0;
  if (bad_args(B, T, n, direction)) return 1;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const long n4 = 4L * n;
  // dh0 and dc0 double as the carried gradients of h and c
  cudaError_t err = cudaSuccess;
  if (B > 0) {
    err = cudaMemcpyAsync(dh0, dh_final, sizeof(float) * B * n, cudaMemcpyDeviceToDevice, stream);
    if (err == cudaSuccess)
      err = cudaMemcpyAsync(dc0, dc_final, sizeof(float) * B * n, cudaMemcpyDeviceToDevice, stream);
  }
  if (err != cudaSuccess) return fail(3, "NativeLstm backward: copying the final-state gradients", err);
  if (T == 0 || B == 0) {
    err = cudaMemsetAsync(dw_re, 0, sizeof(float) * n * n4, stream);
    return err == cudaSuccess ? 0 : fail(3, "NativeLstm backward: zeroing dw_re", err);
  }
  for (int s = T - 1; s >= 0; --s) {
    const int t = direction > 0 ? s : T - 1 - s;
    gate_backward<<<blocks((long)B * n), kThreads, 0, stream>>>(B, T, n, t, direction, s == 0, gates, cells, c0, mask,
                                                                dh0, dy, dc0, dz);
    if (int rc = check_launch("NativeLstm backward: gate_backward launch")) return rc;
    // dh_prev = dz[:, t] @ w_re^T; masked frames pass dh through unchanged
    if (int rc = gemm(stream, false, true, B, n, (int)n4, 1.f, dz + t * n4, (int)(T * n4), w_re, (int)n4, 0.f,
                      workspace, n))
      return rc;
    take_dh<<<blocks((long)B * n), kThreads, 0, stream>>>(B, T, n, t, mask, workspace, dh0);
    if (int rc = check_launch("NativeLstm backward: take_dh launch")) return rc;
  }
  // dw_re = h_prev^T @ dz over all frames at once (masked frames have dz = 0)
  return gemm(stream, true, false, n, (int)n4, B * T, 1.f, h_prev, n, dz, (int)n4, 0.f, dw_re, (int)n4);
}

// Host-memory front end: copies in, runs on a stream of its own, copies out (NumPy API, PyTensor CUDA path).
namespace {

struct HostRun {
  cudaStream_t stream = nullptr;
  float* ptrs[24] = {};
  int count = 0;
  int rc = 0;

  HostRun() {
    cudaError_t err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    if (err != cudaSuccess) rc = fail(3, "cudaStreamCreate failed (is a CUDA GPU visible?)", err);
  }
  ~HostRun() {
    if (stream) cudaStreamSynchronize(stream);
    for (int i = 0; i < count; ++i) cudaFree(ptrs[i]);
    if (stream) cudaStreamDestroy(stream);
  }
  // A device buffer of `floats` floats, filled from `host` when given; nullptr after any failure.
  float* alloc(size_t floats, const float* host = nullptr) {
    if (rc) return nullptr;
    float* p = nullptr;
    cudaError_t err = cudaMalloc(&p, sizeof(float) * (floats ? floats : 1));
    if (err != cudaSuccess) {
      rc = fail(2, "cudaMalloc failed", err);
      return nullptr;
    }
    ptrs[count++] = p;
    if (host && floats) {
      err = cudaMemcpyAsync(p, host, sizeof(float) * floats, cudaMemcpyHostToDevice, stream);
      if (err != cudaSuccess) rc = fail(3, "copying an input to the GPU", err);
    }
    return rc ? nullptr : p;
  }
  int copy_out(float* host, const float* dev, size_t floats) {
    if (rc || !floats) return rc;
    cudaError_t err = cudaMemcpyAsync(host, dev, sizeof(float) * floats, cudaMemcpyDeviceToHost, stream);
    if (err != cudaSuccess) rc = fail(3, "copying an output from the GPU", err);
    return rc;
  }
  int finish() {
    if (rc) return rc;
    cudaError_t err = cudaStreamSynchronize(stream);
    if (err != cudaSuccess) rc = fail(3, "NativeLstm on the GPU", err);
    return rc;
  }
};

}  // namespace

extern "C" int returnn_lstm_fwd_cuda_host(int B, int T, int n, int direction, const float* z, const float* w_re,
                                          const float* mask, const float* h0, const float* c0, float* y,
                                          float* h_final, float* c_final, float* gates, float* cells, float* h_prev) {
  if (bad_args(B, T, n, direction)) return 1;
  HostRun r;
  const size_t btn = (size_t)B * T * n, bn = (size_t)B * n;
  float* dz = r.alloc(btn * 4, z);
  float* dw = r.alloc((size_t)n * 4 * n, w_re);
  float* dm = r.alloc((size_t)B * T, mask);
  float* dh0 = r.alloc(bn, h0);
  float* dc0 = r.alloc(bn, c0);
  float *dy = r.alloc(btn), *dhf = r.alloc(bn), *dcf = r.alloc(bn), *dg = r.alloc(btn * 4), *dcs = r.alloc(btn),
        *dhp = r.alloc(btn);
  if (r.rc) return r.rc;
  r.rc = returnn_lstm_fwd_cuda(r.stream, B, T, n, direction, dz, dw, dm, dh0, dc0, dy, dhf, dcf, dg, dcs, dhp);
  r.copy_out(y, dy, btn);
  r.copy_out(h_final, dhf, bn);
  r.copy_out(c_final, dcf, bn);
  r.copy_out(gates, dg, btn * 4);
  r.copy_out(cells, dcs, btn);
  r.copy_out(h_prev, dhp, btn);
  return r.finish();
}

extern "C" int returnn_lstm_bwd_cuda_host(int B, int T, int n, int direction, const float* w_re, const float* mask,
                                          const float* h0, const float* c0, const float* gates, const float* cells,
                                          const float* h_prev, const float* dy, const float* dh_final,
                                          const float* dc_final, float* dz, float* dw_re, float* dh0, float* dc0) {
  if (bad_args(B, T, n, direction)) return 1;
  HostRun r;
  const size_t btn = (size_t)B * T * n, bn = (size_t)B * n;
  float* w = r.alloc((size_t)n * 4 * n, w_re);
  float* m = r.alloc((size_t)B * T, mask);
  float *h0d = r.alloc(bn, h0), *c0d = r.alloc(bn, c0), *g = r.alloc(btn * 4, gates), *cs = r.alloc(btn, cells);
  float *hp = r.alloc(btn, h_prev), *dyd = r.alloc(btn, dy), *dhf = r.alloc(bn, dh_final), *dcf = r.alloc(bn, dc_final);
  float *dzd = r.alloc(btn * 4), *dwd = r.alloc((size_t)n * 4 * n), *dh0d = r.alloc(bn), *dc0d = r.alloc(bn);
  float* ws = r.alloc(bn);
  if (r.rc) return r.rc;
  r.rc = returnn_lstm_bwd_cuda(r.stream, B, T, n, direction, w, m, h0d, c0d, g, cs, hp, dyd, dhf, dcf, dzd, dwd, dh0d,
                               dc0d, ws);
  r.copy_out(dz, dzd, btn * 4);
  r.copy_out(dw_re, dwd, (size_t)n * 4 * n);
  r.copy_out(dh0, dh0d, bn);
  r.copy_out(dc0, dc0d, bn);
  return r.finish();
}

extern "C" const char* returnn_cuda_last_error(void) { return g_error.c_str(); }

extern "C" const char* returnn_cuda_gemm_backend(void) {
  static std::string text;
  static std::once_flag once;
  std::call_once(once, [] {
    const Cublas& lib = cublas();
#ifdef RETURNN_CUBLAS_LIBRARY
    text = lib.sgemm ? std::string("cuBLAS ") + RETURNN_CUBLAS_LIBRARY : "tiled GEMM (" + lib.why_not + ")";
#else
    text = "tiled GEMM (" + lib.why_not + ")";
#endif
  });
  return text.c_str();
}

extern "C" int returnn_cuda_runtime_version(void) { return CUDART_VERSION; }

extern "C" int returnn_cuda_driver_version(void) {
  int version = 0;
  return cudaDriverGetVersion(&version) == cudaSuccess ? version : 0;
}
