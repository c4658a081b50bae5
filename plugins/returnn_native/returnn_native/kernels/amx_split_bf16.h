// Float32 GEMM on Intel AMX tiles with split-bf16 operands, for the kernels' per-step GEMMs (ISA "amx").
//
// AMX multiplies bf16 (8-bit mantissa) pairs into float32 accumulators. Each float32 x is split into x = hi + lo,
// hi = bf16(x), lo = bf16(x - hi), which keeps 16 of its 24 mantissa bits; a product a*b is then summed as
// a_hi*b_hi + a_hi*b_lo + a_lo*b_hi (the dropped a_lo*b_lo is below 2^-16 of it), in float32: about 1e-5 relative
// error, at a third of AMX's bf16 rate, still several times the AVX-512 float32 rate.
//
// Layout: the right-hand matrix (K x N, read through strides) is packed once per kernel call into panels of 32
// columns (kPanel); a panel holds ceil(K/32) chunks of 32 rows, each four 16x16-pair tiles (columns 0-15 hi, lo,
// columns 16-31 hi, lo) in AMX's pair-interleaved ("VNNI") order, zero beyond K and N. The left-hand rows are split
// per call into hi and lo row buffers of ceil(K/32)*32 bf16 each (zero beyond K).
// Included by lstm_cpu.cc after its kPanel.
#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__linux__)
#define RN_HAVE_AMX 1
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

const int kAmxChunk = 32;                       // K rows per tile (16 pairs)
const long kAmxTile = 16 * 32;                  // bf16 per tile: 16 rows x 16 columns x 2
const long kAmxChunkFloats = 4 * kAmxTile;      // bf16 per 32-row chunk of a panel: 2 column halves x hi, lo

const int kPrefetchChunks = 2;

inline int amx_chunks(int K) { return (K + kAmxChunk - 1) / kAmxChunk; }

// bf16 of x, rounded to nearest even (inputs are finite)
inline uint16_t bf16_round(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

inline float bf16_value(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline void split_bf16(float x, uint16_t* hi, uint16_t* lo) {
  const uint16_t h = bf16_round(x);
  *hi = h;
  *lo = bf16_round(x - bf16_value(h));
}

// Linux hands out the AMX tile state only on request; once per process. False where the kernel or CPU refuses.
bool amx_usable() {
  static const bool ok = [] {
    const long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
}

// Eight tiles of 16 rows x 64 bytes (their use: amx_panel). Loaded per thread for the duration of a guard.
struct AmxTiles {
  explicit AmxTiles(bool on) : on_(on) {
    if (!on_) return;
    struct alignas(64) {
      uint8_t palette, start_row, reserved[14];
      uint16_t colsb[16];
      uint8_t rows[16];
    } cfg = {};
    cfg.palette = 1;
    for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
  }
  ~AmxTiles() {
    if (on_) _tile_release();
  }
  bool on_;
};

// Panels [p0, p1) of the K x N matrix (element (k, j) at src[k * stride_k + j * stride_j]) into out.
void pack_amx(const float* src, long stride_k, long stride_j, int K, int N, int p0, int p1, uint16_t* out) {
  const int kc_n = amx_chunks(K);
  for (int p = p0; p < p1; ++p)
    for (int kc = 0; kc < kc_n; ++kc)
      for (int half = 0; half < 2; ++half) {
        uint16_t* hi = out + ((long)p * kc_n + kc) * kAmxChunkFloats + half * 2 * kAmxTile;
        uint16_t* lo = hi + kAmxTile;
        for (int r = 0; r < 16; ++r)
          for (int j = 0; j < 16; ++j)
            for (int q = 0; q < 2; ++q) {
              const int k = kc * kAmxChunk + 2 * r + q, col = p * kPanel + half * 16 + j;
              const float x = k < K && col < N ? src[k * stride_k + col * stride_j] : 0.f;
              split_bf16(x, hi + r * 32 + j * 2 + q, lo + r * 32 + j * 2 + q);
            }
      }
}

// Rows [0, M) of A (row stride lda, K columns) into hi and lo buffers of ld = amx_chunks(K) * 32 bf16 per row.
void split_rows(int M, int K, const float* a, long lda, uint16_t* hi, uint16_t* lo, int ld) {
  for (int r = 0; r < M; ++r) {
    const float* ar = a + r * lda;
    uint16_t* hr = hi + (long)r * ld;
    uint16_t* lr = lo + (long)r * ld;
    for (int k = 0; k < K; ++k) split_bf16(ar[k], hr + k, lr + k);
  }
}

// scratch[0:16*RB, 0:32] (row stride 32) = rows of the split A (ld bf16 per row) x one packed panel.
// Consecutive tile products go to different accumulators and a loaded tile serves all products that need it
// before it is reloaded: a tile is not renamed, so reloading it waits for the products still reading it.
template <int RB>
void amx_panel(int kc_n, const uint16_t* a_hi, const uint16_t* a_lo, int ld, const uint16_t* panel, float* scratch) {
  const long lda = 2L * ld;  // bytes
  const long a2 = 16L * ld;  // rows 16-31
  _tile_zero(0);
  _tile_zero(1);
  if (RB == 2) {
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int kc = 0; kc < kc_n; ++kc) {
    const uint16_t* b = panel + (long)kc * kAmxChunkFloats;  // column halves 0, 1: hi at 0, 2; lo at 1, 2 tiles
    const long ka = (long)kc * kAmxChunk;
    // the weights stream from L3 (4n^2 * 4 bytes per step exceed L2); fetch chunks ahead (past the end: the next
    // panel's first chunks, which follow in memory)
    const char* ahead = reinterpret_cast<const char*>(b + kPrefetchChunks * kAmxChunkFloats);
    for (int line = 0; line < kAmxChunkFloats * 2 / 64; ++line) _mm_prefetch(ahead + 64 * line, _MM_HINT_T0);
    if (RB == 2) {
      // tiles: 0-3 C (rows 0-15 x cols 0-15, 0-15 x 16-31, 16-31 x 0-15, 16-31 x 16-31), 4-5 A rows, 6-7 B cols
      _tile_loadd(4, a_hi + ka, lda);
      _tile_loadd(5, a_hi + a2 + ka, lda);
      _tile_loadd(6, b, 64);
      _tile_loadd(7, b + 2 * kAmxTile, 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
      _tile_loadd(6, b + kAmxTile, 64);
      _tile_loadd(7, b + 3 * kAmxTile, 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
      _tile_loadd(4, a_lo + ka, lda);
      _tile_loadd(5, a_lo + a2 + ka, lda);
      _tile_loadd(6, b, 64);
      _tile_loadd(7, b + 2 * kAmxTile, 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    } else {
      // tiles: 0-1 C (cols 0-15, 16-31), 2-3 A hi, lo, 4-7 B hi, lo of both column halves: no reloads
      _tile_loadd(2, a_hi + ka, lda);
      _tile_loadd(4, b, 64);
      _tile_loadd(5, b + 2 * kAmxTile, 64);
      _tile_dpbf16ps(0, 2, 4);
      _tile_dpbf16ps(1, 2, 5);
      _tile_loadd(6, b + kAmxTile, 64);
      _tile_loadd(7, b + 3 * kAmxTile, 64);
      _tile_dpbf16ps(0, 2, 6);
      _tile_dpbf16ps(1, 2, 7);
      _tile_loadd(3, a_lo + ka, lda);
      _tile_dpbf16ps(0, 3, 4);
      _tile_dpbf16ps(1, 3, 5);
    }
  }
  _tile_stored(0, scratch, 128);
  _tile_stored(1, scratch + 16, 128);
  if (RB == 2) {
    _tile_stored(2, scratch + 16 * 32, 128);
    _tile_stored(3, scratch + 16 * 32 + 16, 128);
  }
}

// C[0:M, columns of panels p0..p1) clipped to N] = split A (M rows, ld bf16 each, buffers of ceil(M/32)*32 rows)
// x packed matrix (K x N); C with row stride ldc. The calling thread holds AmxTiles.
void amx_gemm(int M, int N, int K, const uint16_t* a_hi, const uint16_t* a_lo, int ld, const uint16_t* packed,
              int p0, int p1, float* c, long ldc) {
  const int kc_n = amx_chunks(K);
  alignas(64) float scratch[32 * 32];
  for (int p = p0; p < p1; ++p) {
    const uint16_t* panel = packed + (long)p * kc_n * kAmxChunkFloats;
    const int col = p * kPanel, cols = N - col < kPanel ? N - col : kPanel;
    for (int r0 = 0; r0 < M; r0 += 32) {
      const int rows = M - r0 < 32 ? M - r0 : 32;
      if (rows > 16)
        amx_panel<2>(kc_n, a_hi + (long)r0 * ld, a_lo + (long)r0 * ld, ld, panel, scratch);
      else
        amx_panel<1>(kc_n, a_hi + (long)r0 * ld, a_lo + (long)r0 * ld, ld, panel, scratch);
      for (int r = 0; r < rows; ++r) std::memcpy(c + (r0 + r) * ldc + col, scratch + r * 32, sizeof(float) * cols);
    }
  }
}

// Hi and lo buffers for up to M rows of K columns per thread, zero beyond the columns written.
struct AmxRows {
  uint16_t* data = nullptr;
  int ld = 0;
  long half = 0;
  ~AmxRows() { std::free(data); }
  bool alloc(int threads, int M, int K) {
    ld = amx_chunks(K) * kAmxChunk;
    half = (long)(M + 31) / 32 * 32 * ld;
    data = static_cast<uint16_t*>(std::calloc(2 * half * threads, sizeof(uint16_t)));
    return data != nullptr;
  }
  uint16_t* hi(int thread) { return data + 2 * half * thread; }
  uint16_t* lo(int thread) { return hi(thread) + half; }
};
}  // namespace
#else
#define RN_HAVE_AMX 0
#endif
