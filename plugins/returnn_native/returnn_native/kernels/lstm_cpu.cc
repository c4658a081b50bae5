// NativeLSTM CPU kernels: per step a (B,n)x(n,4n) sgemm plus fused, vectorised gate math; the recurrent weight
// gradient is one big GEMM after the time loop. Threads split the n units (each owns the four gate columns of its
// units), so a step needs one barrier. See lstm.h for the layout.
#include "lstm.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef RETURNN_BLAS_PREFIX
#define RETURNN_BLAS_PREFIX
#endif
#define RN_CAT2(a, b) a##b
#define RN_CAT(a, b) RN_CAT2(a, b)
#define RN_BLAS(name) RN_CAT(RETURNN_BLAS_PREFIX, name)

extern "C" {
// CBLAS ABI: enums are passed as int (RowMajor 101, NoTrans 111, Trans 112).
void RN_BLAS(cblas_sgemm)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a,
                          int lda, const float* b, int ldb, float beta, float* c, int ldc);
#ifdef RETURNN_BLAS_OPENBLAS
void RN_BLAS(openblas_set_num_threads)(int num_threads);
int RN_BLAS(openblas_get_num_threads)(void);
#endif
}

namespace {

const int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

// Threads of our own (OpenMP), each owning a slice of the n units; BLAS calls run single-threaded inside them.
int g_num_threads = 0;

int default_threads() {
  const char* env = std::getenv("RETURNN_NATIVE_NUM_THREADS");
  if (env && std::atoi(env) > 0) return std::atoi(env);
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Threads used for n units: slices of at least 64 units, so small layers stay single-threaded.
int threads_for(int n) {
  if (g_num_threads <= 0) {
    g_num_threads = default_threads();
#ifdef RETURNN_BLAS_OPENBLAS
    RN_BLAS(openblas_set_num_threads)(1);
#endif
  }
  int nt = n / 64;
  if (nt < 1) nt = 1;
  return nt < g_num_threads ? nt : g_num_threads;
}

// The unit slice [j0, j1) of thread tid: chunks rounded to 16 floats (one AVX-512 vector).
void unit_slice(int n, int nt, int tid, int* j0, int* j1) {
  int chunk = (n + nt - 1) / nt;
  chunk = (chunk + 15) / 16 * 16;
  *j0 = tid * chunk < n ? tid * chunk : n;
  *j1 = *j0 + chunk < n ? *j0 + chunk : n;
}

// My unit slice inside a parallel region; uses the actual team size (a nested region may get fewer threads).
void my_slice(int n, int* j0, int* j1) {
#ifdef _OPENMP
  unit_slice(n, omp_get_num_threads(), omp_get_thread_num(), j0, j1);
#else
  unit_slice(n, 1, 0, j0, j1);
#endif
}

inline float sigmoid(float x) {
  x = x < -40.f ? -40.f : (x > 40.f ? 40.f : x);
  return 1.f / (1.f + std::exp(-x));
}

inline float tanh_fast(float x) {
  x = x < -20.f ? -20.f : (x > 20.f ? 20.f : x);
  float e = std::exp(2.f * x);
  return (e - 1.f) / (e + 1.f);
}

// Gates of units [0, len) of one frame: pre-activation = z + recurrent part g (in place -> activations).
inline void gate_forward(int len, int n, const float* __restrict z, float* __restrict g,
                         const float* __restrict c_prev, float* __restrict c_out, float* __restrict h_out) {
  float* __restrict ga = g;
  float* __restrict gi = g + n;
  float* __restrict gf = g + 2 * n;
  float* __restrict go = g + 3 * n;
#pragma GCC ivdep
  for (int j = 0; j < len; ++j) {
    float a = tanh_fast(ga[j] + z[j]);
    float i = sigmoid(gi[j] + z[n + j]);
    float f = sigmoid(gf[j] + z[2 * n + j]);
    float o = sigmoid(go[j] + z[3 * n + j]);
    float c = f * c_prev[j] + i * a;
    ga[j] = a;
    gi[j] = i;
    gf[j] = f;
    go[j] = o;
    c_out[j] = c;
    h_out[j] = o * tanh_fast(c);
  }
}

// Pre-activation gradients of units [0, len) of one present frame; updates the carried dc in place.
inline void gate_backward(int len, int n, const float* __restrict g, const float* __restrict c,
                          const float* __restrict c_prev, const float* __restrict dh, const float* __restrict dy,
                          float* __restrict dc, float* __restrict dz) {
  const float* __restrict ga = g;
  const float* __restrict gi = g + n;
  const float* __restrict gf = g + 2 * n;
  const float* __restrict go = g + 3 * n;
#pragma GCC ivdep
  for (int j = 0; j < len; ++j) {
    float a = ga[j], i = gi[j], f = gf[j], o = go[j];
    float tc = tanh_fast(c[j]);
    float dh_tot = dh[j] + dy[j];
    float dc_tot = dc[j] + dh_tot * o * (1.f - tc * tc);
    dz[j] = dc_tot * i * (1.f - a * a);
    dz[n + j] = dc_tot * a * i * (1.f - i);
    dz[2 * n + j] = dc_tot * c_prev[j] * f * (1.f - f);
    dz[3 * n + j] = dh_tot * tc * o * (1.f - o);
    dc[j] = dc_tot * f;
  }
}

inline void copy(float* dst, const float* src, int len) { std::memcpy(dst, src, sizeof(float) * len); }

}  // namespace

extern "C" int returnn_lstm_fwd_cpu(int B, int T, int n, int direction, const float* z, const float* w_re,
                                    const float* mask, const float* h0, const float* c0, float* y, float* h_final,
                                    float* c_final, float* gates, float* cells, float* h_prev) {
  if (B < 0 || T < 0 || n <= 0 || (direction != 1 && direction != -1)) return 1;
  const long n4 = 4L * n;
  if (T == 0 || B == 0) {
    if (B > 0) {
      copy(h_final, h0, B * n);
      copy(c_final, c0, B * n);
    }
    return 0;
  }
  const int nt = threads_for(n);
  const int t_first = direction > 0 ? 0 : T - 1, t_end = direction > 0 ? T - 1 : 0;
#pragma omp parallel num_threads(nt)
  {
    int j0, j1;
    my_slice(n, &j0, &j1);
    const int len = j1 - j0;
    for (int b = 0; b < B && len > 0; ++b) copy(h_prev + ((long)b * T + t_first) * n + j0, h0 + (long)b * n + j0, len);
#pragma omp barrier
    for (int s = 0; s < T; ++s) {
      const int t = direction > 0 ? s : T - 1 - s;
      const int t_last = t - direction;  // frame of the previous step
      if (len > 0) {
        // recurrent part of my units' four gate blocks: gates[:, t, blk*n + j0 : blk*n + j1] = h_prev[:, t] @ w_re
        if (len == n)  // one thread: all four blocks in one GEMM
          RN_BLAS(cblas_sgemm)(kRowMajor, kNoTrans, kNoTrans, B, (int)n4, n, 1.f, h_prev + (long)t * n, T * n, w_re,
                               (int)n4, 0.f, gates + t * n4, (int)(T * n4));
        else
          for (int blk = 0; blk < 4; ++blk)
            RN_BLAS(cblas_sgemm)(kRowMajor, kNoTrans, kNoTrans, B, len, n, 1.f, h_prev + (long)t * n, T * n,
                                 w_re + blk * n + j0, (int)n4, 0.f, gates + t * n4 + blk * n + j0, (int)(T * n4));
        for (int b = 0; b < B; ++b) {
          const long bt = (long)b * T + t;
          const float* hp = h_prev + bt * n + j0;
          const float* cp = (s == 0 ? c0 + (long)b * n : cells + ((long)b * T + t_last) * n) + j0;
          float* c_out = cells + bt * n + j0;
          float* h_out = (s + 1 < T ? h_prev + (bt + direction) * n : h_final + (long)b * n) + j0;
          float* y_out = y + bt * n + j0;
          if (mask[bt] > 0.f) {
            gate_forward(len, n, z + bt * n4 + j0, gates + bt * n4 + j0, cp, c_out, h_out);
            copy(y_out, h_out, len);
          } else {
            copy(c_out, cp, len);
            copy(h_out, hp, len);
            std::memset(y_out, 0, sizeof(float) * len);
          }
        }
      }
#pragma omp barrier
    }
    for (int b = 0; b < B && len > 0; ++b) copy(c_final + (long)b * n + j0, cells + ((long)b * T + t_end) * n + j0, len);
  }
  return 0;
}

extern "C" int returnn_lstm_bwd_cpu(int B, int T, int n, int direction, const float* w_re, const float* mask,
                                    const float* h0, const float* c0, const float* gates, const float* cells,
                                    const float* h_prev, const float* dy, const float* dh_final,
                                    const float* dc_final, float* dz, float* dw_re, float* dh0, float* dc0) {
  (void)h0;
  if (B < 0 || T < 0 || n <= 0 || (direction != 1 && direction != -1)) return 1;
  const long n4 = 4L * n;
  if (T == 0 || B == 0) {
    std::memset(dw_re, 0, sizeof(float) * n * n4);
    if (B > 0) {
      copy(dh0, dh_final, B * n);
      copy(dc0, dc_final, B * n);
    }
    return 0;
  }
  float* tmp = static_cast<float*>(std::malloc(sizeof(float) * (size_t)B * n));
  if (!tmp) return 2;
  // dh0 and dc0 double as the carried gradients of h and c
  float* dh = dh0;
  float* dc = dc0;
  copy(dh, dh_final, B * n);
  copy(dc, dc_final, B * n);
  const int nt = threads_for(n);
#pragma omp parallel num_threads(nt)
  {
    int j0, j1;
    my_slice(n, &j0, &j1);
    const int len = j1 - j0;
    for (int s = T - 1; s >= 0; --s) {
      const int t = direction > 0 ? s : T - 1 - s;
      const int t_last = t - direction;
      for (int b = 0; b < B && len > 0; ++b) {
        const long bt = (long)b * T + t;
        float* dz_bt = dz + bt * n4 + j0;
        if (mask[bt] > 0.f) {
          const float* cp = (s == 0 ? c0 + (long)b * n : cells + ((long)b * T + t_last) * n) + j0;
          gate_backward(len, n, gates + bt * n4 + j0, cells + bt * n + j0, cp, dh + (long)b * n + j0,
                        dy + bt * n + j0, dc + (long)b * n + j0, dz_bt);
        } else {
          for (int blk = 0; blk < 4; ++blk) std::memset(dz_bt + blk * n, 0, sizeof(float) * len);
        }
      }
#pragma omp barrier
      if (len > 0) {
        // dh_prev[:, my units] = dz[:, t] @ w_re[my units]^T; masked frames pass dh through unchanged
        RN_BLAS(cblas_sgemm)(kRowMajor, kNoTrans, kTrans, B, len, (int)n4, 1.f, dz + t * n4, (int)(T * n4),
                             w_re + (long)j0 * n4, (int)n4, 0.f, tmp + j0, n);
        for (int b = 0; b < B; ++b)
          if (mask[(long)b * T + t] > 0.f) copy(dh + (long)b * n + j0, tmp + (long)b * n + j0, len);
      }
    }
    // dw_re[:, my units' gate columns] = h_prev^T @ dz over all frames at once (masked frames have dz = 0)
    if (len == n)
      RN_BLAS(cblas_sgemm)(kRowMajor, kTrans, kNoTrans, n, (int)n4, B * T, 1.f, h_prev, n, dz, (int)n4, 0.f, dw_re,
                           (int)n4);
    else
      for (int blk = 0; blk < 4 && len > 0; ++blk)
        RN_BLAS(cblas_sgemm)(kRowMajor, kTrans, kNoTrans, n, len, B * T, 1.f, h_prev, n, dz + blk * n + j0,
                             (int)n4, 0.f, dw_re + blk * n + j0, (int)n4);
  }
  std::free(tmp);
  return 0;
}

extern "C" void returnn_native_set_num_threads(int num_threads) {
  threads_for(1);  // initialise (and pin the BLAS to one thread per caller)
  g_num_threads = num_threads > 0 ? num_threads : default_threads();
}

extern "C" int returnn_native_get_num_threads(void) {
  threads_for(1);
  return g_num_threads;
}
