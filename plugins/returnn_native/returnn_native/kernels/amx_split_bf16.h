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

// hi = bf16(x) rounded to nearest even, lo = bf16(x - hi), each in the low half of a 32-bit lane (x finite)
inline void split16(__m512 x, __m512i* hi, __m512i* lo) {
  const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7FFF);
  __m512i u = _mm512_castps_si512(x);
  const __m512i h = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(half, _mm512_and_si512(_mm512_srli_epi32(u, 16), one))), 16);
  u = _mm512_castps_si512(_mm512_sub_ps(x, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16))));
  *hi = h;
  *lo = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(half, _mm512_and_si512(_mm512_srli_epi32(u, 16), one))), 16);
}

// The first `count` (0..16) lanes.
inline __mmask16 lanes(int count) {
  return count >= 16 ? (__mmask16)0xFFFF : (count <= 0 ? (__mmask16)0 : (__mmask16)((1u << count) - 1));
}

// Pairs (a, b) of bf16 lanes as the 32-bit words AMX reads: a in the low half.
inline __m512i pair16(__m512i a, __m512i b) { return _mm512_or_si512(a, _mm512_slli_epi32(b, 16)); }

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

// Panels [p0, p1) of the K x N matrix into out; element (k, j) at src[k * stride_k + j * stride_j], where the
// matrix's rows (stride_j == 1) or columns (stride_k == 1) are contiguous.
void pack_amx(const float* src, long stride_k, long stride_j, int K, int N, int p0, int p1, uint16_t* out) {
  const int kc_n = amx_chunks(K);
  const __m512i rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                          _mm512_set1_epi32(16));
  for (int p = p0; p < p1; ++p)
    for (int kc = 0; kc < kc_n; ++kc)
      for (int half = 0; half < 2; ++half) {
        uint16_t* hi = out + ((long)p * kc_n + kc) * kAmxChunkFloats + half * 2 * kAmxTile;
        uint16_t* lo = hi + kAmxTile;
        const int k0 = kc * kAmxChunk, j0 = p * kPanel + half * 16;
        if (stride_j == 1) {
          // tile row r: the 16 columns of matrix rows k0 + 2r and k0 + 2r + 1, interleaved
          const __mmask16 cols = lanes(N - j0);
          for (int r = 0; r < 16; ++r) {
            const int k = k0 + 2 * r;
            const __m512 x0 = _mm512_maskz_loadu_ps(k < K ? cols : 0, src + k * stride_k + j0);
            const __m512 x1 = _mm512_maskz_loadu_ps(k + 1 < K ? cols : 0, src + (k + 1) * stride_k + j0);
            __m512i h0, l0, h1, l1;
            split16(x0, &h0, &l0);
            split16(x1, &h1, &l1);
            _mm512_storeu_si512(hi + r * 32, pair16(h0, h1));
            _mm512_storeu_si512(lo + r * 32, pair16(l0, l1));
          }
        } else {
          // matrix column j0 + j: 32 contiguous rows k0.. = the pairs of tile rows 0..15 in tile column j
          for (int j = 0; j < 16; ++j) {
            const bool in = j0 + j < N;
            const float* col = src + (long)(j0 + j) * stride_j + k0;
            __m512i h[2], l[2];
            for (int q = 0; q < 2; ++q) {
              const __m512 x = _mm512_maskz_loadu_ps(in ? lanes(K - k0 - 16 * q) : 0, col + 16 * q);
              split16(x, &h[q], &l[q]);
            }
            // bf16 of rows 2r, 2r + 1 from the two halves: even lanes of (h0 | h1 << 16) packed 32-bit words
            const __m512i idx = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
            const __m512i idx1 = _mm512_add_epi32(idx, _mm512_set1_epi32(1));
            const __m512i hp = pair16(_mm512_permutex2var_epi32(h[0], idx, h[1]), _mm512_permutex2var_epi32(h[0], idx1, h[1]));
            const __m512i lp = pair16(_mm512_permutex2var_epi32(l[0], idx, l[1]), _mm512_permutex2var_epi32(l[0], idx1, l[1]));
            _mm512_i32scatter_epi32(hi + j * 2, rows, hp, 4);
            _mm512_i32scatter_epi32(lo + j * 2, rows, lp, 4);
          }
        }
      }
}

// Rows [0, M) of A (row stride lda, K columns) into hi and lo buffers of ld = amx_chunks(K) * 32 bf16 per row.
void split_rows(int M, int K, const float* a, long lda, uint16_t* hi, uint16_t* lo, int ld) {
  for (int r = 0; r < M; ++r)
    for (int k = 0; k < K; k += 16) {
      const __mmask16 m = lanes(K - k);
      __m512i h, l;
      split16(_mm512_maskz_loadu_ps(m, a + r * lda + k), &h, &l);
      _mm512_mask_cvtepi32_storeu_epi16(hi + (long)r * ld + k, m, h);
      _mm512_mask_cvtepi32_storeu_epi16(lo + (long)r * ld + k, m, l);
    }
}

// Rows [m0, m1) of A = S^T, S (K x M) with row stride lds, into hi and lo buffers as split_rows writes them.
void split_rows_transposed(int m0, int m1, int K, const float* s, long lds, uint16_t* hi, uint16_t* lo, int ld) {
  const __m512i rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                          _mm512_set1_epi32(ld / 2));
  for (int k = 0; k < K; k += 2)
    for (int m = m0; m < m1; m += 16) {
      const __mmask16 in = lanes(m1 - m);
      __m512i h0, l0, h1, l1;
      split16(_mm512_maskz_loadu_ps(in, s + k * lds + m), &h0, &l0);
      split16(_mm512_maskz_loadu_ps(k + 1 < K ? in : 0, s + (k + 1) * lds + m), &h1, &l1);
      // the pair (k, k + 1) of row m + i is the 32-bit word (m + i) * ld / 2 + k / 2
      _mm512_mask_i32scatter_epi32(hi + (long)m * ld + k, in, rows, pair16(h0, h1), 4);
      _mm512_mask_i32scatter_epi32(lo + (long)m * ld + k, in, rows, pair16(l0, l1), 4);
    }
}

// C tiles 0-3 (rows 0-15, 16-31 x column halves 0, 1) += A tiles 4 (rows 0-15), 5 (rows 16-31) x B tiles 6, 7
inline void amx_dp_2x2() {
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(1, 4, 7);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
}

// c[0:16*RB, 0:32] (row stride ldc floats) = rows of the split A (ld bf16 per row) x one packed panel.
// Consecutive tile products go to different accumulators and a loaded tile serves all products that need it
// before it is reloaded: a tile is not renamed, so reloading it waits for the products still reading it.
// With `accumulate`, adds to what c holds.
template <int RB>
void amx_panel(int kc_n, const uint16_t* a_hi, const uint16_t* a_lo, int ld, const uint16_t* panel, float* c,
               long ldc, bool accumulate) {
  const long lda = 2L * ld;  // bytes
  const long a2 = 16L * ld;  // rows 16-31
  const long ldcb = 4 * ldc;  // bytes
  if (accumulate) {
    _tile_loadd(0, c, ldcb);
    _tile_loadd(1, c + 16, ldcb);
    if (RB == 2) {
      _tile_loadd(2, c + 16 * ldc, ldcb);
      _tile_loadd(3, c + 16 * ldc + 16, ldcb);
    }
  } else {
    _tile_zero(0);
    _tile_zero(1);
    if (RB == 2) {
      _tile_zero(2);
      _tile_zero(3);
    }
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
      amx_dp_2x2();
      _tile_loadd(6, b + kAmxTile, 64);
      _tile_loadd(7, b + 3 * kAmxTile, 64);
      amx_dp_2x2();
      _tile_loadd(4, a_lo + ka, lda);
      _tile_loadd(5, a_lo + a2 + ka, lda);
      _tile_loadd(6, b, 64);
      _tile_loadd(7, b + 2 * kAmxTile, 64);
      amx_dp_2x2();
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
  _tile_stored(0, c, ldcb);
  _tile_stored(1, c + 16, ldcb);
  if (RB == 2) {
    _tile_stored(2, c + 16 * ldc, ldcb);
    _tile_stored(3, c + 16 * ldc + 16, ldcb);
  }
}

// C[0:M, columns of panels p0..p1) clipped to N] = split A (M rows, ld bf16 each, buffers of ceil(M/32)*32 rows)
// x packed matrix (K x N); C with row stride ldc. The calling thread holds AmxTiles.
// K runs in blocks of kKBlock chunks, so that a block of A's rows (512 rows: 1 MB) stays in L2 across the panels
// and a panel's block (64 KB) across the rows; C is carried between blocks.
// With `accumulate`, C += the product.
void amx_gemm(int M, int N, int K, const uint16_t* a_hi, const uint16_t* a_lo, int ld, const uint16_t* packed,
              int p0, int p1, float* c, long ldc, bool accumulate = false) {
  const int kKBlock = 16;
  const int kc_n = amx_chunks(K);
  alignas(64) float scratch[32 * 32];
  for (int kb = 0; kb < kc_n; kb += kKBlock) {
    const int kb_n = kc_n - kb < kKBlock ? kc_n - kb : kKBlock;
    const bool add = accumulate || kb > 0;
    const long ka = (long)kb * kAmxChunk;
    for (int p = p0; p < p1; ++p) {
      const uint16_t* panel = packed + ((long)p * kc_n + kb) * kAmxChunkFloats;
      const int col = p * kPanel, cols = N - col < kPanel ? N - col : kPanel;
      for (int r0 = 0; r0 < M; r0 += 32) {
        const int rows = M - r0 < 32 ? M - r0 : 32;
        float* c0 = c + r0 * ldc + col;
        // whole tiles go straight to C; a block clipped by M or N through the scratch
        const bool direct = (rows == 32 || rows == 16) && cols == kPanel;
        if (add && !direct)
          for (int r = 0; r < rows; ++r) std::memcpy(scratch + r * 32, c0 + r * ldc, sizeof(float) * cols);
        const uint16_t* ah = a_hi + (long)r0 * ld + ka;
        const uint16_t* al = a_lo + (long)r0 * ld + ka;
        float* out = direct ? c0 : scratch;
        const long ldo = direct ? ldc : 32;
        if (rows > 16)
          amx_panel<2>(kb_n, ah, al, ld, panel, out, ldo, add);
        else
          amx_panel<1>(kb_n, ah, al, ld, panel, out, ldo, add);
        if (!direct)
          for (int r = 0; r < rows; ++r) std::memcpy(c0 + r * ldc, scratch + r * 32, sizeof(float) * cols);
      }
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
