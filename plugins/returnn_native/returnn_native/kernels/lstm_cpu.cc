// NativeLSTM CPU kernels: per step a (B,n)x(n,4n) GEMM plus fused, vectorised gate math; the recurrent weight
// gradient is one big GEMM after the time loop. Threads split the n units (each owns the four gate columns of its
// units), so a step needs one barrier. See lstm.h for the layout.
//
// The per-step GEMMs have few rows (B) and always the same weights. A BLAS sgemm repacks the 4n^2 weights on every
// call, which costs about as much as the multiplication at B=40; so on AVX-512 CPUs the weights are packed once per
// kernel call into 32-column panels and a register-blocked micro-kernel runs the steps (ISA "avx512"). On CPUs with
// AMX the same panels hold split-bf16 tiles (ISA "amx", amx_split_bf16.h), which also compute the weight gradient.
// Elsewhere, or when asked for (returnn_native_set_isa), each step calls the BLAS (ISA "generic").
#include "lstm.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#define RN_HAVE_AVX512 1
#else
#define RN_HAVE_AVX512 0
#endif

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

// Threads of our own (OpenMP), each owning a slice of the n units; BLAS calls inside them run single-threaded.
int g_num_threads = 0;

// Columns per packed weight panel (two AVX-512 vectors); unit slices of threads are multiples of it.
const int kPanel = 32;

}  // namespace

#include "amx_split_bf16.h"

namespace {

enum Isa { kIsaAuto = 0, kIsaGeneric = 1, kIsaAvx512 = 2, kIsaAmx = 3 };
int g_isa = -1;  // -1: not yet read from RETURNN_NATIVE_ISA

bool isa_available(int isa) {
  if (isa == kIsaGeneric) return true;
  if (isa == kIsaAvx512) return RN_HAVE_AVX512;
#if RN_HAVE_AMX
  if (isa == kIsaAmx) return amx_usable();
#endif
  return false;
}

// AMX where the CPU and OS allow it (measured faster than AVX-512 in benchmarks/lstm.py, native_tf_amx vs
// native_tf_avx512: 1x500 fwd+bwd 93 vs 104 ms on 2 Sapphire Rapids cores), else AVX-512, else the BLAS.
int best_isa() {
  if (isa_available(kIsaAmx)) return kIsaAmx;
  return RN_HAVE_AVX512 ? kIsaAvx512 : kIsaGeneric;
}

int current_isa() {
  if (g_isa < 0) {
    const char* env = std::getenv("RETURNN_NATIVE_ISA");
    const char* names[] = {"auto", "generic", "avx512", "amx"};
    g_isa = best_isa();
    for (int isa = kIsaGeneric; env && isa <= kIsaAmx; ++isa)
      if (std::strcmp(env, names[isa]) == 0 && isa_available(isa)) g_isa = isa;
  }
  return g_isa;
}

// Units from which AMX runs under ISA "amx": on smaller layers the tiles' padding (16 rows, 32 columns and 32 of K)
// and the per-step split cost more than they save (1 thread, B=40: slower or equal up to n=128, faster from 256).
const int kAmxMinUnits = 256;

// The step GEMM for a layer of n units.
int isa_for(int n) {
  const int isa = current_isa();
  return isa == kIsaAmx && n < kAmxMinUnits ? (RN_HAVE_AVX512 ? kIsaAvx512 : kIsaGeneric) : isa;
}

int default_threads() {
  const char* env = std::getenv("RETURNN_NATIVE_NUM_THREADS");
  if (env && std::atoi(env) > 0) return std::atoi(env);
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Kernel calls running right now in this process (TF runs a BLSTM's two directions at once).
std::atomic<int> g_active{0};

// The threads one call may take (at least 1): calls that run at the same time share them instead of each taking
// all of them.
int thread_share() {
  if (g_num_threads <= 0) g_num_threads = default_threads();
  const int active = g_active.load() > 1 ? g_active.load() : 1;
  return g_num_threads / active > 1 ? g_num_threads / active : 1;
}

// Threads for a (B, n) problem: one per 64 units or 8 sequences, so small problems stay single-threaded, within the
// call's share.
int threads_for(int B, int n) {
  int nt = n / 64 > B / 8 ? n / 64 : B / 8;
  const int share = thread_share();
  if (nt < 1) nt = 1;
  return nt < share ? nt : share;
}

// Counts a kernel call as running for its lifetime.
struct ActiveCall {
  ActiveCall() { ++g_active; }
  ~ActiveCall() { --g_active; }
};

// The part of a thread: sequences [b0, b1) x units [j0, j1), and the weight panels [p0, p1) it packs.
// With enough sequences the threads split the batch: each runs its own sequences through all time steps, with no
// barrier per step (a thread the OS preempts does not hold up the others). Otherwise they split the units, and all
// meet once per step. Unit slices are whole panels.
struct Part {
  int b0, b1, j0, j1, p0, p1;
  bool by_batch;
};

// Frames per block of the AMX weight gradient (a multiple of its K blocks of 512).
const int kAmxFrameBlock = 4096;

// Rows per thread for the batch split. AMX: two full tiles of rows, else its threads stream all the weights (4n^2
// split-bf16 pairs, more than L2) per step where a unit split lets each stream its share.
const int kMinRowsPerThread = 8, kMinRowsPerThreadAmx = 32;

void slice(int len, int parts, int k, int round, int* lo, int* hi) {
  int chunk = (len + parts - 1) / parts;
  chunk = (chunk + round - 1) / round * round;
  *lo = k * chunk < len ? k * chunk : len;
  *hi = *lo + chunk < len ? *lo + chunk : len;
}

int panels(int N) { return (N + kPanel - 1) / kPanel; }

// My part inside a parallel region; uses the actual team size (a nested region may get fewer threads).
// This thread's number and its team's size inside a parallel region.
int thread_num() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

Part my_part(int B, int n, int min_rows) {
  const int team = team_size(), tid = thread_num();
  Part p;
  p.by_batch = team > 1 && B >= min_rows * team;
  int u0, u1;
  slice(n, team, tid, kPanel, &u0, &u1);
  p.p0 = u1 > u0 ? u0 / kPanel : 0;
  p.p1 = u1 > u0 ? panels(u1) : 0;
  if (p.by_batch) {
    slice(B, team, tid, 1, &p.b0, &p.b1);
    p.j0 = 0;
    p.j1 = n;
  } else {
    p.b0 = 0;
    p.b1 = B;
    p.j0 = u0;
    p.j1 = u1;
  }
  return p;
}

// The BLAS runs with 1 thread while any kernel call is running (our own threads call it), and with the caller's
// setting again once the last one ends, so other users of the same OpenBLAS (e.g. PyTensor's dot products) keep
// theirs. Counted, not saved per call: two calls that overlap (TF runs a BLSTM's directions on two of its threads)
// would otherwise each save the other's 1 and leave the BLAS single-threaded for good.
#ifdef RETURNN_BLAS_OPENBLAS
std::mutex g_blas_mutex;
int g_blas_users = 0, g_blas_saved = 0;
#endif
struct BlasThreads {
#ifdef RETURNN_BLAS_OPENBLAS
  BlasThreads() {
    std::lock_guard<std::mutex> lock(g_blas_mutex);
    if (g_blas_users++ == 0) {
      g_blas_saved = RN_BLAS(openblas_get_num_threads)();
      if (g_blas_saved != 1) RN_BLAS(openblas_set_num_threads)(1);
    }
  }
  ~BlasThreads() {
    std::lock_guard<std::mutex> lock(g_blas_mutex);
    if (--g_blas_users == 0 && g_blas_saved != 1) RN_BLAS(openblas_set_num_threads)(g_blas_saved);
  }
#endif
};

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

// ---- packed weights: a K x N matrix (element (k, j) at src[k * stride_k + j * stride_j]) as ceil(N / kPanel)
// panels of K rows x kPanel columns, row-major, zero beyond column N. Panel p starts at p * K * kPanel.

template <class T = float>
struct Packed {
  T* data = nullptr;
  ~Packed() { std::free(data); }
  bool alloc(long count) {
    // 64-byte aligned, size rounded up as aligned_alloc requires
    size_t bytes = (sizeof(T) * (size_t)count + 63) / 64 * 64;
    data = static_cast<T*>(std::aligned_alloc(64, bytes ? bytes : 64));
    return data != nullptr;
  }
};

// Panels [p0, p1) of the matrix into out (the threads pack a share each; with units split, the ones they use).
void pack_panels(const float* src, long stride_k, long stride_j, int K, int N, int p0, int p1, float* out) {
  for (int p = p0; p < p1; ++p) {
    float* dst = out + (long)p * K * kPanel;
    const int jn = N - p * kPanel < kPanel ? N - p * kPanel : kPanel;
    for (int k = 0; k < K; ++k) {
      const float* s = src + k * stride_k + (long)p * kPanel * stride_j;
      float* d = dst + (long)k * kPanel;
      for (int j = 0; j < jn; ++j) d[j] = s[j * stride_j];
      for (int j = jn; j < kPanel; ++j) d[j] = 0.f;
    }
  }
}

#if RN_HAVE_AVX512
// C[0:MR, 0:cols] = A[0:MR, 0:K] x panel (K x kPanel); A row-major with row stride lda, C with row stride ldc.
template <int MR>
void micro_kernel(int K, const float* __restrict a, long lda, const float* __restrict panel, float* __restrict c,
                  long ldc, int cols) {
  __m512 acc0[MR], acc1[MR];
  for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int k = 0; k < K; ++k) {
    const __m512 w0 = _mm512_load_ps(panel + (long)k * kPanel);
    const __m512 w1 = _mm512_load_ps(panel + (long)k * kPanel + 16);
    for (int r = 0; r < MR; ++r) {
      const __m512 x = _mm512_set1_ps(a[r * lda + k]);
      acc0[r] = _mm512_fmadd_ps(x, w0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(x, w1, acc1[r]);
    }
  }
  const __mmask16 m0 = cols >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? (__mmask16)0xFFFF : (cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0);
  for (int r = 0; r < MR; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, acc0[r]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc1[r]);
  }
}

const int kMaxRows = 12;  // 24 accumulators + 2 weight vectors + 1 broadcast of the 32 vector registers
typedef void (*MicroKernel)(int, const float*, long, const float*, float*, long, int);
const MicroKernel kMicroKernels[kMaxRows + 1] = {
    nullptr,          micro_kernel<1>, micro_kernel<2>,  micro_kernel<3>,  micro_kernel<4>,
    micro_kernel<5>,  micro_kernel<6>, micro_kernel<7>,  micro_kernel<8>,  micro_kernel<9>,
    micro_kernel<10>, micro_kernel<11>, micro_kernel<12>};
#endif

// C[0:M, columns of panels p0..p1) clipped to N] = A (M x K, row stride lda) x packed matrix (K x N).
void packed_gemm(int M, int N, int K, const float* a, long lda, const float* packed, int p0, int p1, float* c,
                 long ldc) {
#if RN_HAVE_AVX512
  // rows in equal blocks of at most kMaxRows (B=40: four of 10), each panel stays in cache across the blocks
  const int blocks = (M + kMaxRows - 1) / kMaxRows;
  for (int p = p0; p < p1; ++p) {
    const float* panel = packed + (long)p * K * kPanel;
    const int col = p * kPanel;
    const int cols = N - col < kPanel ? N - col : kPanel;
    for (int blk = 0, r0 = 0; blk < blocks; ++blk) {
      const int r1 = (int)((long)M * (blk + 1) / blocks);
      kMicroKernels[r1 - r0](K, a + r0 * lda, lda, panel, c + r0 * ldc + col, ldc, cols);
      r0 = r1;
    }
  }
#else
  (void)M, (void)N, (void)K, (void)a, (void)lda, (void)packed, (void)p0, (void)p1, (void)c, (void)ldc;
#endif
}

// The forward pass on nt threads (see returnn_lstm_fwd_cpu).
int lstm_fwd(int nt, int B, int T, int n, int direction, const float* z, const float* w_re, const float* mask,
             const float* h0, const float* c0, float* y, float* h_final, float* c_final, float* gates, float* cells,
             float* h_prev) {
  if (B < 0 || T < 0 || n <= 0 || (direction != 1 && direction != -1)) return 1;
  const long n4 = 4L * n;
  if (T == 0 || B == 0) {
    if (B > 0) {
      copy(h_final, h0, B * n);
      copy(c_final, c0, B * n);
    }
    return 0;
  }
  const int isa = isa_for(n);
  const bool use_packed = isa == kIsaAvx512;
  // w_re's four gate blocks, each n x n, packed separately: block g at g * np * n * kPanel
  const int np = panels(n);
  Packed<> packed;
  if (use_packed && !packed.alloc(4L * np * n * kPanel)) return 2;
  const bool use_amx = isa == kIsaAmx;  // only where compiled in (isa_available)
#if RN_HAVE_AMX
  const long amx_block = (long)np * amx_chunks(n) * kAmxChunkFloats;  // one packed gate block
  Packed<uint16_t> amx_w;
  AmxRows amx_h;
  if (use_amx && (!amx_w.alloc(4 * amx_block) || !amx_h.alloc(nt, B, n))) return 2;
#endif
  BlasThreads blas_guard;
  const int t_first = direction > 0 ? 0 : T - 1, t_end = direction > 0 ? T - 1 : 0;
#pragma omp parallel num_threads(nt)
  {
    const Part part = my_part(B, n, use_amx ? kMinRowsPerThreadAmx : kMinRowsPerThread);
    const int j0 = part.j0, len = part.j1 - part.j0, b0 = part.b0, rows = part.b1 - part.b0;
    const int q0 = j0 / kPanel, q1 = panels(part.j1);
    if (use_packed)
      for (int g = 0; g < 4; ++g)
        pack_panels(w_re + g * n, n4, 1, n, n, part.p0, part.p1, packed.data + (long)g * np * n * kPanel);
#if RN_HAVE_AMX
    AmxTiles tiles(use_amx);
    const int tid = thread_num();
    if (use_amx)
      for (int g = 0; g < 4; ++g) pack_amx(w_re + g * n, n4, 1, n, n, part.p0, part.p1, amx_w.data + g * amx_block);
#endif
    for (int b = part.b0; b < part.b1 && len > 0; ++b)
      copy(h_prev + ((long)b * T + t_first) * n + j0, h0 + (long)b * n + j0, len);
#pragma omp barrier
    for (int s = 0; s < T; ++s) {
      const int t = direction > 0 ? s : T - 1 - s;
      const int t_last = t - direction;  // frame of the previous step
      if (len > 0 && rows > 0) {
        // recurrent part of my units' four gate blocks: gates[rows, t, g*n + j0 : g*n + j1] = h_prev[rows, t] @ w_re
        const float* hp_t = h_prev + ((long)b0 * T + t) * n;
        float* g_t = gates + ((long)b0 * T + t) * n4;
#if RN_HAVE_AMX
        if (use_amx) {
          split_rows(rows, n, hp_t, (long)T * n, amx_h.hi(tid), amx_h.lo(tid), amx_h.ld);
          for (int g = 0; g < 4; ++g)
            amx_gemm(rows, n, n, amx_h.hi(tid), amx_h.lo(tid), amx_h.ld, amx_w.data + g * amx_block, q0, q1,
                     g_t + g * n, T * n4);
        } else
#endif
        if (use_packed)
          for (int g = 0; g < 4; ++g)
            packed_gemm(rows, n, n, hp_t, (long)T * n, packed.data + (long)g * np * n * kPanel, q0, q1, g_t + g * n,
                        T * n4);
        else if (len == n)  // all four blocks in one GEMM
          RN_BLAS(cblas_sgemm)(kRowMajor, kNoTrans, kNoTrans, rows, (int)n4, n, 1.f, hp_t, T * n, w_re, (int)n4, 0.f,
                               g_t, (int)(T * n4));
        else
          for (int g = 0; g < 4; ++g)
            RN_BLAS(cblas_sgemm)(kRowMajor, kNoTrans, kNoTrans, rows, len, n, 1.f, hp_t, T * n, w_re + g * n + j0,
                                 (int)n4, 0.f, g_t + g * n + j0, (int)(T * n4));
        for (int b = part.b0; b < part.b1; ++b) {
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
      if (!part.by_batch) {
#pragma omp barrier
      }
    }
    for (int b = part.b0; b < part.b1 && len > 0; ++b)
      copy(c_final + (long)b * n + j0, cells + ((long)b * T + t_end) * n + j0, len);
  }
  return 0;
}

// The backward pass on nt threads (see returnn_lstm_bwd_cpu).
int lstm_bwd(int nt, int B, int T, int n, int direction, const float* w_re, const float* mask, const float* h0,
             const float* c0, const float* gates, const float* cells, const float* h_prev, const float* dy,
             const float* dh_final, const float* dc_final, float* dz, float* dw_re, float* dh0, float* dc0) {
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
  const int isa = isa_for(n);
  const bool use_packed = isa == kIsaAvx512;
  // w_re^T (4n x n) packed: the step's dh_prev = dz_t @ w_re^T
  Packed<> packed;
  bool ok = !use_packed || packed.alloc((long)panels(n) * n4 * kPanel);
  const bool use_amx = isa == kIsaAmx;  // only where compiled in (isa_available)
#if RN_HAVE_AMX
  Packed<uint16_t> amx_w;
  AmxRows amx_dz, amx_hT;  // the step's dz rows; h_prev^T of a block of frames for the weight gradient
  Packed<uint16_t> amx_dzp;  // dz of a block of frames, packed for the weight gradient
  // the weight gradient runs over blocks of frames, so its split copies stay small for long or large batches
  const int frames = B * T, frame_block = frames < kAmxFrameBlock ? frames : kAmxFrameBlock;
  ok = ok && (!use_amx || (amx_w.alloc((long)panels(n) * amx_chunks((int)n4) * kAmxChunkFloats) &&
                           amx_dz.alloc(nt, B, (int)n4) && amx_hT.alloc(1, n, frame_block) &&
                           amx_dzp.alloc((long)panels((int)n4) * amx_chunks(frame_block) * kAmxChunkFloats)));
#endif
  if (!ok) {
    std::free(tmp);
    return 2;
  }
  // dh0 and dc0 double as the carried gradients of h and c
  float* dh = dh0;
  float* dc = dc0;
  copy(dh, dh_final, B * n);
  copy(dc, dc_final, B * n);
  {
    BlasThreads blas_guard;
#pragma omp parallel num_threads(nt)
    {
      const Part part = my_part(B, n, use_amx ? kMinRowsPerThreadAmx : kMinRowsPerThread);
      const int j0 = part.j0, len = part.j1 - part.j0, b0 = part.b0, rows = part.b1 - part.b0;
      const int q0 = j0 / kPanel, q1 = panels(part.j1);
      if (use_packed) pack_panels(w_re, 1, n4, (int)n4, n, part.p0, part.p1, packed.data);
#if RN_HAVE_AMX
      AmxTiles tiles(use_amx);
      const int tid = thread_num();
      if (use_amx) pack_amx(w_re, 1, n4, (int)n4, n, part.p0, part.p1, amx_w.data);
#endif
#pragma omp barrier
      for (int s = T - 1; s >= 0; --s) {
        const int t = direction > 0 ? s : T - 1 - s;
        const int t_last = t - direction;
        for (int b = part.b0; b < part.b1 && len > 0; ++b) {
          const long bt = (long)b * T + t;
          float* dz_bt = dz + bt * n4 + j0;
          if (mask[bt] > 0.f) {
            const float* cp = (s == 0 ? c0 + (long)b * n : cells + ((long)b * T + t_last) * n) + j0;
            gate_backward(len, n, gates + bt * n4 + j0, cells + bt * n + j0, cp, dh + (long)b * n + j0,
                          dy + bt * n + j0, dc + (long)b * n + j0, dz_bt);
          } else {
            for (int g = 0; g < 4; ++g) std::memset(dz_bt + g * n, 0, sizeof(float) * len);
          }
        }
        if (!part.by_batch) {
#pragma omp barrier
        }
        if (len > 0 && rows > 0) {
          // dh_prev[rows, my units] = dz[rows, t] @ w_re[my units]^T; masked frames pass dh through unchanged
          const float* dz_t = dz + ((long)b0 * T + t) * n4;
#if RN_HAVE_AMX
          if (use_amx) {
            split_rows(rows, (int)n4, dz_t, T * n4, amx_dz.hi(tid), amx_dz.lo(tid), amx_dz.ld);
            amx_gemm(rows, n, (int)n4, amx_dz.hi(tid), amx_dz.lo(tid), amx_dz.ld, amx_w.data, q0, q1,
                     tmp + (long)b0 * n, n);
          } else
#endif
          if (use_packed)
            packed_gemm(rows, n, (int)n4, dz_t, T * n4, packed.data, q0, q1, tmp + (long)b0 * n, n);
          else
            RN_BLAS(cblas_sgemm)(kRowMajor, kNoTrans, kTrans, rows, len, (int)n4, 1.f, dz_t, (int)(T * n4),
                                 w_re + (long)j0 * n4, (int)n4, 0.f, tmp + (long)b0 * n + j0, n);
          for (int b = part.b0; b < part.b1; ++b)
            if (mask[(long)b * T + t] > 0.f) copy(dh + (long)b * n + j0, tmp + (long)b * n + j0, len);
        }
      }
      // dw_re[:, my panels' gate columns] = h_prev^T @ dz over all frames at once (masked frames have dz = 0).
      // Our threads split it rather than the BLAS's own, which would spin-wait on the cores after the call.
#pragma omp barrier
      const int u0 = part.p0 * kPanel, u1 = part.p1 * kPanel < n ? part.p1 * kPanel : n;
#if RN_HAVE_AMX
      if (use_amx) {
        // split h_prev^T (my units' rows) and pack dz (my panels of the 4n columns), then my panels of dw_re
        int w0, w1;
        slice(panels((int)n4), team_size(), tid, 1, &w0, &w1);
        for (int f0 = 0; f0 < frames; f0 += frame_block) {
          const int fn = frames - f0 < frame_block ? frames - f0 : frame_block;
          if (u1 > u0)
            split_rows_transposed(u0, u1, fn, h_prev + (long)f0 * n, n, amx_hT.hi(0), amx_hT.lo(0), amx_hT.ld);
          pack_amx(dz + (long)f0 * n4, n4, 1, fn, (int)n4, w0, w1, amx_dzp.data);
#pragma omp barrier
          amx_gemm(n, (int)n4, fn, amx_hT.hi(0), amx_hT.lo(0), amx_hT.ld, amx_dzp.data, w0, w1, dw_re, n4, f0 > 0);
#pragma omp barrier
        }
      } else
#endif
      if (u1 == n && u0 == 0)
        RN_BLAS(cblas_sgemm)(kRowMajor, kTrans, kNoTrans, n, (int)n4, B * T, 1.f, h_prev, n, dz, (int)n4, 0.f, dw_re,
                             (int)n4);
      else
        for (int g = 0; g < 4 && u1 > u0; ++g)
          RN_BLAS(cblas_sgemm)(kRowMajor, kTrans, kNoTrans, n, u1 - u0, B * T, 1.f, h_prev, n, dz + g * n + u0,
                               (int)n4, 0.f, dw_re + g * n + u0, (int)n4);
    }
  }
  std::free(tmp);
  return 0;
}

// Runs a and b (each given its thread count) at the same time: b on a thread of its own, a on this one. Each is the
// initial thread of its own OpenMP teams, as when TF calls the kernel from two of its threads.
template <class A, class Bf>
int run_pair(int nt_a, int nt_b, A a, Bf b) {
  if (g_num_threads >= 2) {
    try {
      int rc_b = 0;
      std::thread other([&] { rc_b = b(nt_b); });
      const int rc_a = a(nt_a);
      other.join();
      return rc_a ? rc_a : rc_b;
    } catch (const std::system_error&) {  // no thread to be had: one after the other
    }
  }
  const int rc_a = a(nt_a);
  return rc_a ? rc_a : b(nt_b);
}

// ---- The input projection's GEMMs (z = x W and its gradients dx = dz W^T, dW = x^T dz) for the bindings.
// Under ISA "amx" on split-bf16 tiles (about 1e-5 relative error, as the step GEMMs), which outrun a float32 sgemm;
// elsewhere, and for shapes too small to fill the tiles, the BLAS.

// Grow-only buffers for one call's split operands, kept for the next call: a layer's GEMMs run with the same shapes
// every step, so nothing is allocated (or faulted in) after the first. Held in a pool, not per thread, so that they
// number as many as calls ever ran at once (TF may call from any of its many pool threads).
struct AmxScratch {
  uint16_t* packed = nullptr;
  uint16_t* rows = nullptr;
  size_t packed_size = 0, rows_size = 0;
  ~AmxScratch() {
    std::free(packed);
    std::free(rows);
  }
  static bool grow(uint16_t** data, size_t* size, size_t count) {
    if (count > *size) {
      std::free(*data);
      *data = static_cast<uint16_t*>(std::aligned_alloc(64, (count * sizeof(uint16_t) + 63) / 64 * 64));
      *size = *data ? count : 0;
    }
    return *data != nullptr;
  }
  bool reserve(size_t packed_count, size_t rows_count) {
    return grow(&packed, &packed_size, packed_count) && grow(&rows, &rows_size, rows_count);
  }
};

// One pool's buffers for the lifetime of a call.
class AmxScratchLease {
 public:
  AmxScratchLease() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.empty()) {
      scratch_ = new (std::nothrow) AmxScratch;
    } else {
      scratch_ = free_.back();
      free_.pop_back();
    }
  }
  ~AmxScratchLease() {
    if (!scratch_) return;
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(scratch_);  // never freed: the pool lives as long as the library
  }
  AmxScratch* get() const { return scratch_; }

 private:
  AmxScratch* scratch_;
  static std::mutex mutex_;
  static std::vector<AmxScratch*> free_;
};
std::mutex AmxScratchLease::mutex_;
std::vector<AmxScratch*> AmxScratchLease::free_;

#if RN_HAVE_AMX
// The product runs in blocks, so that the split operands stay bounded whatever B*T is (a few tens of MB per call
// running at once, not a split copy of each operand): K in blocks of kAmxGemmDepth (packed B: up to 4096 x N), and within
// one, A in blocks of kAmxGemmRows rows (512 x 4096 split: 8 MB; amx_gemm then keeps 512 x 512 of it in L2).
const int kAmxGemmDepth = 4096, kAmxGemmRows = 512;

int matmul_amx(int nt, int M, int N, int K, const float* a, bool ta, const float* b, bool tb, float* c) {
  const int kb_max = K < kAmxGemmDepth ? K : kAmxGemmDepth, rb_max = M < kAmxGemmRows ? M : kAmxGemmRows;
  const int ld = amx_chunks(kb_max) * kAmxChunk, np = panels(N);
  const long half = (long)(rb_max + 31) / 32 * 32 * ld;
  AmxScratchLease lease;
  AmxScratch* scratch = lease.get();
  if (!scratch || !scratch->reserve((size_t)np * amx_chunks(kb_max) * kAmxChunkFloats, 2 * (size_t)half)) return 2;
  uint16_t *packed = scratch->packed, *hi = scratch->rows, *lo = hi + half;
#pragma omp parallel num_threads(nt)
  {
    const int team = team_size(), tid = thread_num();
    int p0, p1;
    slice(np, team, tid, 1, &p0, &p1);
    AmxTiles tiles(true);
    for (int k0 = 0; k0 < K; k0 += kAmxGemmDepth) {
      const int kn = K - k0 < kAmxGemmDepth ? K - k0 : kAmxGemmDepth, kld = amx_chunks(kn) * kAmxChunk;
      // rows k0.. of op(B), element (k, j): b[k * N + j], or b[j * K + k] when B is stored transposed
      pack_amx(tb ? b + k0 : b + (long)k0 * N, tb ? 1 : N, tb ? K : 1, kn, N, p0, p1, packed);
      for (int r0 = 0; r0 < M; r0 += kAmxGemmRows) {
        const int rn = M - r0 < kAmxGemmRows ? M - r0 : kAmxGemmRows;
        int m0, m1;
        slice(rn, team, tid, 16, &m0, &m1);
        if (r0 > 0) {
#pragma omp barrier
        }  // everyone is done with the last row block before it is overwritten
        if (ta)  // op(A) = S^T, S (K, M): columns r0.. of rows k0..
          split_rows_transposed(m0, m1, kn, a + (long)k0 * M + r0, M, hi, lo, kld);
        else if (m1 > m0)
          split_rows(m1 - m0, kn, a + (long)(r0 + m0) * K + k0, K, hi + (long)m0 * kld, lo + (long)m0 * kld, kld);
        const int from = ta ? (kn + 1) / 2 * 2 : kn;  // the transposed split writes whole pairs
        for (int r = m0; r < m1 && kld > from; ++r) {  // zero beyond K: the buffers are reused (NaN * 0 is NaN)
          std::memset(hi + (long)r * kld + from, 0, sizeof(uint16_t) * (kld - from));
          std::memset(lo + (long)r * kld + from, 0, sizeof(uint16_t) * (kld - from));
        }
#pragma omp barrier
        if (p1 > p0)
          amx_gemm(rn, N, kn, hi, lo, kld, packed, p0, p1, c + (long)r0 * N, N, k0 > 0);
      }
#pragma omp barrier
    }
  }
  return 0;
}
#endif

// Below these sizes the tiles' padding (16 rows, 32 columns, 32 of K) costs more than AMX gains over the BLAS.
const int kAmxGemmMinRows = 32, kAmxGemmMinCols = 128, kAmxGemmMinDepth = 32;

}  // namespace

extern "C" int returnn_matmul_cpu(int M, int N, int K, const float* a, int transpose_a, const float* b,
                                  int transpose_b, float* c) {
  if (M < 0 || N < 0 || K < 0) return 1;
  if (M == 0 || N == 0) return 0;
  if (K == 0) {
    std::memset(c, 0, sizeof(float) * (size_t)M * N);
    return 0;
  }
#if RN_HAVE_AMX
  if (current_isa() == kIsaAmx && M >= kAmxGemmMinRows && N >= kAmxGemmMinCols && K >= kAmxGemmMinDepth) {
    ActiveCall active;
    const int share = thread_share();
    const int nt = share < panels(N) ? share : panels(N);
    return matmul_amx(nt, M, N, K, a, transpose_a != 0, b, transpose_b != 0, c);
  }
#endif
  RN_BLAS(cblas_sgemm)(kRowMajor, transpose_a ? kTrans : kNoTrans, transpose_b ? kTrans : kNoTrans, M, N, K, 1.f, a,
                       transpose_a ? M : K, b, transpose_b ? K : N, 0.f, c, N);
  return 0;
}

extern "C" int returnn_lstm_fwd_cpu(int B, int T, int n, int direction, const float* z, const float* w_re,
                                    const float* mask, const float* h0, const float* c0, float* y, float* h_final,
                                    float* c_final, float* gates, float* cells, float* h_prev) {
  ActiveCall active;
  return lstm_fwd(threads_for(B, n), B, T, n, direction, z, w_re, mask, h0, c0, y, h_final, c_final, gates, cells,
                  h_prev);
}

extern "C" int returnn_lstm_bwd_cpu(int B, int T, int n, int direction, const float* w_re, const float* mask,
                                    const float* h0, const float* c0, const float* gates, const float* cells,
                                    const float* h_prev, const float* dy, const float* dh_final,
                                    const float* dc_final, float* dz, float* dw_re, float* dh0, float* dc0) {
  ActiveCall active;
  return lstm_bwd(threads_for(B, n), B, T, n, direction, w_re, mask, h0, c0, gates, cells, h_prev, dy, dh_final,
                  dc_final, dz, dw_re, dh0, dc0);
}

extern "C" int returnn_lstm_fwd_pair_cpu(int B, int T, int n, int direction, const float* z, const float* w_re,
                                         const float* mask, const float* h0, const float* c0, float* y,
                                         float* h_final, float* c_final, float* gates, float* cells, float* h_prev,
                                         int B2, int T2, int n2, int direction2, const float* z2, const float* w_re2,
                                         const float* mask2, const float* h02, const float* c02, float* y2,
                                         float* h_final2, float* c_final2, float* gates2, float* cells2,
                                         float* h_prev2) {
  ActiveCall active, active2;  // both counted before either takes its share of the threads
  const int nt = threads_for(B, n), nt2 = threads_for(B2, n2);
  return run_pair(
      nt, nt2,
      [&](int k) {
        return lstm_fwd(k, B, T, n, direction, z, w_re, mask, h0, c0, y, h_final, c_final, gates, cells, h_prev);
      },
      [&](int k) {
        return lstm_fwd(k, B2, T2, n2, direction2, z2, w_re2, mask2, h02, c02, y2, h_final2, c_final2, gates2, cells2,
                        h_prev2);
      });
}

extern "C" int returnn_lstm_bwd_pair_cpu(int B, int T, int n, int direction, const float* w_re, const float* mask,
                                         const float* h0, const float* c0, const float* gates, const float* cells,
                                         const float* h_prev, const float* dy, const float* dh_final,
                                         const float* dc_final, float* dz, float* dw_re, float* dh0, float* dc0,
                                         int B2, int T2, int n2, int direction2, const float* w_re2,
                                         const float* mask2, const float* h02, const float* c02,
                                         const float* gates2, const float* cells2, const float* h_prev2,
                                         const float* dy2, const float* dh_final2, const float* dc_final2,
                                         float* dz2, float* dw_re2, float* dh02, float* dc02) {
  ActiveCall active, active2;
  const int nt = threads_for(B, n), nt2 = threads_for(B2, n2);
  return run_pair(
      nt, nt2,
      [&](int k) {
        return lstm_bwd(k, B, T, n, direction, w_re, mask, h0, c0, gates, cells, h_prev, dy, dh_final, dc_final, dz,
                        dw_re, dh0, dc0);
      },
      [&](int k) {
        return lstm_bwd(k, B2, T2, n2, direction2, w_re2, mask2, h02, c02, gates2, cells2, h_prev2, dy2, dh_final2,
                        dc_final2, dz2, dw_re2, dh02, dc02);
      });
}

extern "C" void returnn_native_set_num_threads(int num_threads) {
  g_num_threads = num_threads > 0 ? num_threads : default_threads();
}

extern "C" int returnn_native_get_num_threads(void) {
  if (g_num_threads <= 0) g_num_threads = default_threads();
  return g_num_threads;
}

extern "C" int returnn_native_set_isa(int isa) {
  if (isa == kIsaAuto) isa = best_isa();
  if (!isa_available(isa)) return 1;
  g_isa = isa;
  return 0;
}

extern "C" int returnn_native_get_isa(void) { return current_isa(); }
