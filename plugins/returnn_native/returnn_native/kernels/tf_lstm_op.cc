// TensorFlow binding of NativeLstm through TF's stable C kernel API (ops ReturnnNativeLstm, ReturnnNativeLstmGrad, and
// the input projection's GEMMs ReturnnNativeMatMul, ReturnnNativeMatMulTA, ReturnnNativeMatMulTB).
// Only C headers are needed, so the binding compiles in well under a second instead of the ~10 s that
// TensorFlow's C++ framework headers take.
#include <cstdio>
#include <memory>
#include <string>

#include "lstm.h"
#include "tensorflow/c/kernels.h"
#include "tensorflow/c/ops.h"
#include "tensorflow/c/tf_status.h"
#include "tensorflow/c/tf_tensor.h"

namespace {

struct StatusDeleter {
  void operator()(TF_Status* s) const { TF_DeleteStatus(s); }
};
struct TensorDeleter {
  void operator()(TF_Tensor* t) const { TF_DeleteTensor(t); }
};
struct ShapeDeleter {
  void operator()(TF_ShapeHandle* s) const { TF_DeleteShapeHandle(s); }
};
using StatusPtr = std::unique_ptr<TF_Status, StatusDeleter>;
using TensorPtr = std::unique_ptr<TF_Tensor, TensorDeleter>;
using ShapePtr = std::unique_ptr<TF_ShapeHandle, ShapeDeleter>;

// ---- shape inference: outputs built from sub-shapes of z / gates (B, T, 4n) and w_re (n, 4n)

ShapePtr Input(TF_ShapeInferenceContext* ctx, int i, int rank, TF_Status* status) {
  ShapePtr in(TF_NewShapeHandle()), out(TF_NewShapeHandle());
  TF_ShapeInferenceContextGetInput(ctx, i, in.get(), status);
  if (TF_GetCode(status) == TF_OK) TF_ShapeInferenceContextWithRank(ctx, in.get(), rank, out.get(), status);
  return out;
}

ShapePtr Sub(TF_ShapeInferenceContext* ctx, TF_ShapeHandle* s, int64_t start, int64_t end, TF_Status* status) {
  ShapePtr out(TF_NewShapeHandle());
  if (TF_GetCode(status) == TF_OK) TF_ShapeInferenceContextSubshape(ctx, s, start, end, out.get(), status);
  return out;
}

ShapePtr Concat(TF_ShapeInferenceContext* ctx, TF_ShapeHandle* a, TF_ShapeHandle* b, TF_Status* status) {
  ShapePtr out(TF_NewShapeHandle());
  if (TF_GetCode(status) == TF_OK) TF_ShapeInferenceContextConcatenateShapes(ctx, a, b, out.get(), status);
  return out;
}

void SetOutput(TF_ShapeInferenceContext* ctx, int i, TF_ShapeHandle* s, TF_Status* status) {
  if (TF_GetCode(status) == TF_OK) TF_ShapeInferenceContextSetOutput(ctx, i, s, status);
}

// seq_input: index of the (B, T, 4n) input; w_input: index of w_re (n, 4n)
void ShapeParts(TF_ShapeInferenceContext* ctx, int seq_input, int w_input, TF_Status* status, ShapePtr* btn4,
                ShapePtr* w, ShapePtr* btn, ShapePtr* bn) {
  *btn4 = Input(ctx, seq_input, 3, status);
  *w = Input(ctx, w_input, 2, status);
  ShapePtr bt = Sub(ctx, btn4->get(), 0, 2, status);
  ShapePtr b = Sub(ctx, btn4->get(), 0, 1, status);
  ShapePtr n = Sub(ctx, w->get(), 0, 1, status);
  *btn = Concat(ctx, bt.get(), n.get(), status);
  *bn = Concat(ctx, b.get(), n.get(), status);
}

void LstmShape(TF_ShapeInferenceContext* ctx, TF_Status* status) {
  ShapePtr btn4, w, btn, bn;
  ShapeParts(ctx, 0, 1, status, &btn4, &w, &btn, &bn);
  TF_ShapeHandle* outs[6] = {btn.get(), bn.get(), bn.get(), btn4.get(), btn.get(), btn.get()};
  for (int i = 0; i < 6; ++i) SetOutput(ctx, i, outs[i], status);
}

void LstmGradShape(TF_ShapeInferenceContext* ctx, TF_Status* status) {
  ShapePtr btn4, w, btn, bn;
  ShapeParts(ctx, 4, 0, status, &btn4, &w, &btn, &bn);
  TF_ShapeHandle* outs[4] = {btn4.get(), w.get(), bn.get(), bn.get()};
  for (int i = 0; i < 4; ++i) SetOutput(ctx, i, outs[i], status);
}

// ---- kernels

struct Attrs {
  int64_t direction = 1;
};

void* CreateKernel(TF_OpKernelConstruction* ctx) {
  auto* attrs = new Attrs;
  StatusPtr status(TF_NewStatus());
  TF_OpKernelConstruction_GetAttrInt64(ctx, "direction", &attrs->direction, status.get());
  if (TF_GetCode(status.get()) == TF_OK && attrs->direction != 1 && attrs->direction != -1)
    TF_SetStatus(status.get(), TF_INVALID_ARGUMENT, "NativeLstm: attr direction must be 1 or -1");
  if (TF_GetCode(status.get()) != TF_OK) TF_OpKernelConstruction_Failure(ctx, status.get());
  return attrs;
}

void DeleteKernel(void* kernel) { delete static_cast<Attrs*>(kernel); }

// Inputs fetched and shape-checked; reports an InvalidArgument naming the input on mismatch.
struct Io {
  TF_OpKernelContext* ctx;
  const char* op;
  TF_Status* status;
  TensorPtr tensors[16];
  bool ok() const { return TF_GetCode(status) == TF_OK; }

  const float* In(int i, const char* name, std::initializer_list<int64_t> dims) {
    if (!ok()) return nullptr;
    TF_Tensor* t = nullptr;
    TF_GetInput(ctx, i, &t, status);
    tensors[i].reset(t);
    if (!ok()) return nullptr;
    bool same = TF_NumDims(t) == static_cast<int>(dims.size());
    int k = 0;
    for (int64_t d : dims) same = same && TF_Dim(t, k++) == d;
    if (!same) {
      std::string got = "(";
      for (int j = 0; j < TF_NumDims(t); ++j) got += (j ? ", " : "") + std::to_string(TF_Dim(t, j));
      std::string want = "(";
      k = 0;
      for (int64_t d : dims) want += (k++ ? ", " : "") + std::to_string(d);
      std::string msg = std::string(op) + ": input '" + name + "' has shape " + got + "), expected " + want + ")";
      TF_SetStatus(status, TF_INVALID_ARGUMENT, msg.c_str());
      return nullptr;
    }
    return static_cast<const float*>(TF_TensorData(t));
  }

  int64_t Dim(int i, int d) {
    TF_Tensor* t = nullptr;
    TF_GetInput(ctx, i, &t, status);
    TensorPtr hold(t);
    if (!ok()) return -1;
    if (TF_NumDims(t) <= d) {
      std::string msg = std::string(op) + ": input " + std::to_string(i) + " needs rank > " + std::to_string(d);
      TF_SetStatus(status, TF_INVALID_ARGUMENT, msg.c_str());
      return -1;
    }
    return TF_Dim(t, d);
  }

  float* Out(int i, std::initializer_list<int64_t> dims) {
    if (!ok()) return nullptr;
    int64_t shape[3];
    size_t count = 1;
    int k = 0;
    for (int64_t d : dims) count *= static_cast<size_t>(shape[k++] = d);
    TF_Tensor* t = TF_AllocateOutput(ctx, i, TF_FLOAT, shape, k, count * sizeof(float), status);
    TensorPtr hold(t);
    if (!ok() || !t) return nullptr;
    return static_cast<float*>(TF_TensorData(t));
  }
};

void ComputeLstm(void* kernel, TF_OpKernelContext* ctx) {
  const int direction = static_cast<int>(static_cast<Attrs*>(kernel)->direction);
  StatusPtr status(TF_NewStatus());
  Io io{ctx, "NativeLstm", status.get(), {}};
  const int64_t B = io.Dim(0, 0), T = io.Dim(0, 1), n = io.Dim(1, 0);
  const float* z = io.In(0, "z", {B, T, 4 * n});
  const float* w_re = io.In(1, "w_re", {n, 4 * n});
  const float* mask = io.In(2, "mask", {B, T});
  const float* h0 = io.In(3, "h0", {B, n});
  const float* c0 = io.In(4, "c0", {B, n});
  float* y = io.Out(0, {B, T, n});
  float* hf = io.Out(1, {B, n});
  float* cf = io.Out(2, {B, n});
  float* gates = io.Out(3, {B, T, 4 * n});
  float* cells = io.Out(4, {B, T, n});
  float* hp = io.Out(5, {B, T, n});
  if (io.ok() && n > 0) {
    int rc = returnn_lstm_fwd_cpu(static_cast<int>(B), static_cast<int>(T), static_cast<int>(n), direction, z, w_re,
                                  mask, h0, c0, y, hf, cf, gates, cells, hp);
    if (rc) TF_SetStatus(status.get(), TF_INTERNAL, "NativeLstm forward kernel failed");
  }
  if (!io.ok()) TF_OpKernelContext_Failure(ctx, status.get());
}

void ComputeLstmGrad(void* kernel, TF_OpKernelContext* ctx) {
  const int direction = static_cast<int>(static_cast<Attrs*>(kernel)->direction);
  StatusPtr status(TF_NewStatus());
  Io io{ctx, "NativeLstmGrad", status.get(), {}};
  const int64_t B = io.Dim(4, 0), T = io.Dim(4, 1), n = io.Dim(0, 0);
  const float* w_re = io.In(0, "w_re", {n, 4 * n});
  const float* mask = io.In(1, "mask", {B, T});
  const float* h0 = io.In(2, "h0", {B, n});
  const float* c0 = io.In(3, "c0", {B, n});
  const float* gates = io.In(4, "gates", {B, T, 4 * n});
  const float* cells = io.In(5, "cells", {B, T, n});
  const float* hp = io.In(6, "h_prev", {B, T, n});
  const float* dy = io.In(7, "dy", {B, T, n});
  const float* dhf = io.In(8, "dh_final", {B, n});
  const float* dcf = io.In(9, "dc_final", {B, n});
  float* dz = io.Out(0, {B, T, 4 * n});
  float* dw = io.Out(1, {n, 4 * n});
  float* dh0 = io.Out(2, {B, n});
  float* dc0 = io.Out(3, {B, n});
  if (io.ok() && n > 0) {
    int rc = returnn_lstm_bwd_cpu(static_cast<int>(B), static_cast<int>(T), static_cast<int>(n), direction, w_re, mask,
                                  h0, c0, gates, cells, hp, dy, dhf, dcf, dz, dw, dh0, dc0);
    if (rc) TF_SetStatus(status.get(), TF_INTERNAL, "NativeLstmGrad kernel failed");
  }
  if (!io.ok()) TF_OpKernelContext_Failure(ctx, status.get());
}

// Reports a failed registration (there is no caller to return it to).
void Check(TF_Status* status, const char* what) {
  if (TF_GetCode(status) != TF_OK) std::fprintf(stderr, "returnn-native: %s: %s\n", what, TF_Message(status));
}

// ---- ReturnnNativeMatMul{,TA,TB}: c = op(a) op(b), op transposing a (TA) or b (TB); one op per variant, so that
// shape inference knows the result's shape (the C shape API cannot read bool attrs). The three are closed under
// differentiation: the gradients of each are products of the others.

template <bool TA, bool TB>
void MatMulShape(TF_ShapeInferenceContext* ctx, TF_Status* status) {
  ShapePtr a = Input(ctx, 0, 2, status), b = Input(ctx, 1, 2, status);
  ShapePtr rows = Sub(ctx, a.get(), TA ? 1 : 0, TA ? 2 : 1, status);
  ShapePtr cols = Sub(ctx, b.get(), TB ? 0 : 1, TB ? 1 : 2, status);
  ShapePtr out = Concat(ctx, rows.get(), cols.get(), status);
  SetOutput(ctx, 0, out.get(), status);
}

template <bool TA, bool TB>
void ComputeMatMul(void*, TF_OpKernelContext* ctx) {
  StatusPtr status(TF_NewStatus());
  Io io{ctx, "NativeMatMul", status.get(), {}};
  const int64_t a0 = io.Dim(0, 0), a1 = io.Dim(0, 1), b0 = io.Dim(1, 0), b1 = io.Dim(1, 1);
  const int64_t M = TA ? a1 : a0, K = TA ? a0 : a1, K2 = TB ? b1 : b0, N = TB ? b0 : b1;
  if (io.ok() && K != K2) {
    std::string msg = "NativeMatMul: inner dimensions differ: op(a) has " + std::to_string(K) + " columns, op(b) " +
                      std::to_string(K2) + " rows";
    TF_SetStatus(status.get(), TF_INVALID_ARGUMENT, msg.c_str());
  }
  const float* a = io.In(0, "a", {a0, a1});
  const float* b = io.In(1, "b", {b0, b1});
  float* c = io.Out(0, {M, N});
  if (io.ok() && returnn_matmul_cpu(static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), a, TA, b, TB, c))
    TF_SetStatus(status.get(), TF_INTERNAL, "NativeMatMul kernel failed");
  if (!io.ok()) TF_OpKernelContext_Failure(ctx, status.get());
}

void* CreateMatMulKernel(TF_OpKernelConstruction*) { return nullptr; }
void DeleteMatMulKernel(void*) {}

template <bool TA, bool TB>
void RegisterMatMul(const char* name, TF_Status* status) {
  TF_OpDefinitionBuilder* b = TF_NewOpDefinitionBuilder(name);
  TF_OpDefinitionBuilderAddInput(b, "a: float");
  TF_OpDefinitionBuilderAddInput(b, "b: float");
  TF_OpDefinitionBuilderAddOutput(b, "product: float");
  TF_OpDefinitionBuilderSetShapeInferenceFunction(b, &MatMulShape<TA, TB>);
  TF_RegisterOpDefinition(b, status);
  Check(status, name);
  TF_KernelBuilder* k = TF_NewKernelBuilder(name, "CPU", &CreateMatMulKernel, &ComputeMatMul<TA, TB>,
                                            &DeleteMatMulKernel);
  TF_RegisterKernelBuilder((std::string(name) + "Cpu").c_str(), k, status);
  Check(status, name);
}

// ---- registration (runs when tf.load_op_library loads this library)

bool RegisterAll() {
  StatusPtr status(TF_NewStatus());
  {
    TF_OpDefinitionBuilder* b = TF_NewOpDefinitionBuilder("ReturnnNativeLstm");
    for (const char* in : {"z: float", "w_re: float", "mask: float", "h0: float", "c0: float"})
      TF_OpDefinitionBuilderAddInput(b, in);
    TF_OpDefinitionBuilderAddAttr(b, "direction: int = 1");
    for (const char* out : {"y: float", "h_final: float", "c_final: float", "gates: float", "cells: float",
                            "h_prev: float"})
      TF_OpDefinitionBuilderAddOutput(b, out);
    TF_OpDefinitionBuilderSetShapeInferenceFunction(b, &LstmShape);
    TF_RegisterOpDefinition(b, status.get());
    Check(status.get(), "registering op ReturnnNativeLstm");
  }
  {
    TF_OpDefinitionBuilder* b = TF_NewOpDefinitionBuilder("ReturnnNativeLstmGrad");
    for (const char* in : {"w_re: float", "mask: float", "h0: float", "c0: float", "gates: float", "cells: float",
                           "h_prev: float", "dy: float", "dh_final: float", "dc_final: float"})
      TF_OpDefinitionBuilderAddInput(b, in);
    TF_OpDefinitionBuilderAddAttr(b, "direction: int = 1");
    for (const char* out : {"dz: float", "dw_re: float", "dh0: float", "dc0: float"})
      TF_OpDefinitionBuilderAddOutput(b, out);
    TF_OpDefinitionBuilderSetShapeInferenceFunction(b, &LstmGradShape);
    TF_RegisterOpDefinition(b, status.get());
    Check(status.get(), "registering op ReturnnNativeLstmGrad");
  }
  TF_KernelBuilder* k = TF_NewKernelBuilder("ReturnnNativeLstm", "CPU", &CreateKernel, &ComputeLstm, &DeleteKernel);
  TF_RegisterKernelBuilder("ReturnnNativeLstmCpu", k, status.get());
  Check(status.get(), "registering CPU kernel of ReturnnNativeLstm");
  k = TF_NewKernelBuilder("ReturnnNativeLstmGrad", "CPU", &CreateKernel, &ComputeLstmGrad, &DeleteKernel);
  TF_RegisterKernelBuilder("ReturnnNativeLstmGradCpu", k, status.get());
  Check(status.get(), "registering CPU kernel of ReturnnNativeLstmGrad");
  RegisterMatMul<false, false>("ReturnnNativeMatMul", status.get());
  RegisterMatMul<true, false>("ReturnnNativeMatMulTA", status.get());
  RegisterMatMul<false, true>("ReturnnNativeMatMulTB", status.get());
  return true;
}

const bool registered = RegisterAll();

}  // namespace
