// NativeLSTM CPU kernels: per step one (B,n)x(n,4n) sgemm plus fused, vectorised gate math; the
// recurrent weight gradient is one big GEMM after the time loop. See lstm.h for the layout.
#include "lstm.h"

#include <cmath>
#include <cstring>
#include <new>
#include <vector>

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

inline float sigmoid(float x) {
  x = x < -40.f ? -40.f : (x > 40.f ? 40.f : x);
  return 1.f / (1.f + std::exp(-x));
}

inline float tanh_fast(float x) {
  x = x < -20.f ? -20.f : (x > 20.f ? 20.f : x);
  float e = std::exp(2.f * x);
  return (e - 1.f) / (e + 1.f);
}

// Gate activations in place for one frame and the new state; vectorises over j.
inline void gate_forward(int n, float* __restrict g, const float* __restrict c_prev, float* __restrict c_out,
                         float* __restrict h_out) {
  float* __restrict ga = g;
  float* __restrict gi = g + n;
  float* __restrict gf = g + 2 * n;
  float* __restrict go = g + 3 * n;
#pragma GCC ivdep
  for (int j = 0; j < n; ++j) {
    float a = tanh_fast(ga[j]);
    float i = sigmoid(gi[j]);
    float f = sigmoid(gf[j]);
    float o = sigmoid(go[j]);
    float c = f * c_prev[j] + i * a;
    ga[j] = a;
    gi[j] = i;
    gf[j] = f;
    go[j] = o;
    c_out[j] = c;
    h_out[j] = o * tanh_fast(c);
  }
}

// Gradient of the pre-activations for one present frame; updates the carried dc in place.
inline void gate_backward(int n, const float* __restrict g, const float* __restrict c, const float* __restrict c_prev,
                          const float* __restrict dh, const float* __restrict dy, float* __restrict dc,
                          float* __restrict dz) {
  const float* __restrict ga = g;
  const float* __restrict gi = g + n;
  const float* __restrict gf = g + 2 * n;
  const float* __restrict go = g + 3 * n;
#pragma GCC ivdep
  for (int j = 0; j < n; ++j) {
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

}  // namespace

extern "C" int returnn_lstm_fwd_cpu(int B, int T, int n, int direction, const float* z, const float* w_re,
                                    const float* mask, const float* h0, const float* c0, float* y, float* h_final,
                                    float* c_final, float* gates, float* cells, float* h_prev) {
  if (B < 0 || T < 0 || n <= 0 || (direction != 1 && direction != -1)) return 1;
  const long n4 = 4L * n;
  if (T == 0 || B == 0) {
    if (B > 0) {
      std::memcpy(h_final, h0, sizeof(float) * B * n);
      std::memcpy(c_final, c0, sizeof(float) * B * n);
    }
    return 0;
  }
  std::memcpy(gates, z, sizeof(float) * (size_t)B * T * n4);
  std::vector<float> h_new;
  try {
    h_new.resize((size_t)B * n);
  } catch (const std::bad_alloc&) {
    return 2;
  }
  for (int b = 0; b < B; ++b) std::memcpy(h_prev + ((size_t)b * T + (direction > 0 ? 0 : T - 1)) * n, h0 + (size_t)b * n, sizeof(float) * n);
  for (int s = 0; s < T; ++s) {
    const int t = direction > 0 ? s : T - 1 - s;
    const int t_last = t - direction;  // frame of the previous step
    float* g_t = gates + (size_t)t * n4;
    const float* hp_t = h_prev + (size_t)t * n;
    // gates[:, t] += h_prev[:, t] @ w_re
    RN_BLAS(cblas_sgemm)(kRowMajor, kNoTrans, kNoTrans, B, (int)n4, n, 1.f, hp_t, T * n, w_re, (int)n4, 1.f, g_t,
                         (int)(T * n4));
    for (int b = 0; b < B; ++b) {
      const size_t bt = (size_t)b * T + t;
      const float* hp = h_prev + bt * n;
      const float* cp = s == 0 ? c0 + (size_t)b * n : cells + ((size_t)b * T + t_last) * n;
      float* c_out = cells + bt * n;
      float* h_out = h_new.data() + (size_t)b * n;
      float* y_out = y + bt * n;
      if (mask[bt] > 0.f) {
        gate_forward(n, gates + bt * n4, cp, c_out, h_out);
        std::memcpy(y_out, h_out, sizeof(float) * n);
      } else {
        std::memcpy(c_out, cp, sizeof(float) * n);
        std::memcpy(h_out, hp, sizeof(float) * n);
        std::memset(y_out, 0, sizeof(float) * n);
      }
      if (s + 1 < T) std::memcpy(h_prev + (bt + direction) * n, h_out, sizeof(float) * n);
    }
  }
  const int t_end = direction > 0 ? T - 1 : 0;
  std::memcpy(h_final, h_new.data(), sizeof(float) * B * n);
  for (int b = 0; b < B; ++b) std::memcpy(c_final + (size_t)b * n, cells + ((size_t)b * T + t_end) * n, sizeof(float) * n);
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
      std::memcpy(dh0, dh_final, sizeof(float) * B * n);
      std::memcpy(dc0, dc_final, sizeof(float) * B * n);
    }
    return 0;
  }
  std::vector<float> dh, tmp;
  try {
    dh.assign(dh_final, dh_final + (size_t)B * n);
    tmp.resize((size_t)B * n);
  } catch (const std::bad_alloc&) {
    return 2;
  }
  std::memcpy(dc0, dc_final, sizeof(float) * B * n);  // dc0 doubles as the carried cell gradient
  float* dc = dc0;
  for (int s = T - 1; s >= 0; --s) {
    const int t = direction > 0 ? s : T - 1 - s;
    const int t_last = t - direction;
    for (int b = 0; b < B; ++b) {
      const size_t bt = (size_t)b * T + t;
      float* dz_bt = dz + bt * n4;
      if (mask[bt] > 0.f) {
        const float* cp = s == 0 ? c0 + (size_t)b * n : cells + ((size_t)b * T + t_last) * n;
        gate_backward(n, gates + bt * n4, cells + bt * n, cp, dh.data() + (size_t)b * n, dy + bt * n,
                      dc + (size_t)b * n, dz_bt);
      } else {
        std::memset(dz_bt, 0, sizeof(float) * n4);
      }
    }
    // dh_prev = dz[:, t] @ w_re^T for present frames; masked frames pass dh through unchanged
    RN_BLAS(cblas_sgemm)(kRowMajor, kNoTrans, kTrans, B, n, (int)n4, 1.f, dz + (size_t)t * n4, (int)(T * n4), w_re,
                         (int)n4, 0.f, tmp.data(), n);
    for (int b = 0; b < B; ++b) {
      if (mask[(size_t)b * T + t] > 0.f) std::memcpy(dh.data() + (size_t)b * n, tmp.data() + (size_t)b * n, sizeof(float) * n);
    }
  }
  std::memcpy(dh0, dh.data(), sizeof(float) * B * n);
  // dw_re = h_prev^T @ dz over all frames at once (masked frames have dz = 0)
  RN_BLAS(cblas_sgemm)(kRowMajor, kTrans, kNoTrans, n, (int)n4, B * T, 1.f, h_prev, n, dz, (int)n4, 0.f, dw_re, (int)n4);
  return 0;
}

extern "C" void returnn_native_set_num_threads(int num_threads) {
#ifdef RETURNN_BLAS_OPENBLAS
  RN_BLAS(openblas_set_num_threads)(num_threads);
#else
  (void)num_threads;
#endif
}

extern "C" int returnn_native_get_num_threads(void) {
#ifdef RETURNN_BLAS_OPENBLAS
  return RN_BLAS(openblas_get_num_threads)();
#else
  return 1;
#endif
}
