// GPU kernels of the TF ops ReturnnNativeLstm / ReturnnNativeLstmGrad on TF's C++ op API. The ops themselves (inputs,
// attrs, shape functions) are registered by the CPU library (tf_lstm_op.cc), which is loaded first; this library adds
// DEVICE_GPU kernels for them, so TF places NativeLstm on a visible GPU and on the CPU kernel otherwise.
// TF's C kernel API hands out streams only for pluggable devices, hence the C++ API here: the CUDA stream of the
// op comes from the kernel context's Eigen GPU device. Host code only; the kernels are in lstm_cuda.cu.
#define EIGEN_USE_GPU

#include <string>

#include "lstm_cuda.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

std::string ShapeText(std::initializer_list<int64_t> dims) {
  std::string s = "(";
  int k = 0;
  for (int64_t d : dims) s += (k++ ? ", " : "") + std::to_string(d);
  return s + ")";
}

// Input i as a device pointer after checking its shape; nullptr (and an InvalidArgument naming it) on mismatch.
const float* In(OpKernelContext* ctx, const char* op, int i, const char* name, std::initializer_list<int64_t> dims) {
  if (!ctx->status().ok()) return nullptr;
  const Tensor& t = ctx->input(i);
  bool same = t.dims() == static_cast<int>(dims.size());
  int k = 0;
  for (int64_t d : dims) same = same && t.dim_size(k++) == d;
  if (!same) {
    ctx->SetStatus(absl::InvalidArgumentError(absl::StrCat(op, ": input '", name, "' has shape ", t.shape().DebugString(),
                                                       ", expected ", ShapeText(dims))));
    return nullptr;
  }
  return t.flat<float>().data();
}

// Size of axis d of input i; -1 (and an InvalidArgument) when the input has too few axes.
int64_t Dim(OpKernelContext* ctx, const char* op, int i, int d) {
  if (!ctx->status().ok()) return -1;
  const Tensor& t = ctx->input(i);
  if (t.dims() <= d) {
    ctx->SetStatus(absl::InvalidArgumentError(absl::StrCat(op, ": input ", i, " needs rank > ", d, ", got shape ",
                                                       t.shape().DebugString())));
    return -1;
  }
  return t.dim_size(d);
}

float* Out(OpKernelContext* ctx, int i, std::initializer_list<int64_t> dims) {
  if (!ctx->status().ok()) return nullptr;
  Tensor* t = nullptr;
  TensorShape shape;
  for (int64_t d : dims) shape.AddDim(d);
  ctx->SetStatus(ctx->allocate_output(i, shape, &t));
  return ctx->status().ok() ? t->flat<float>().data() : nullptr;
}

void* Stream(OpKernelContext* ctx) { return static_cast<void*>(ctx->eigen_gpu_device().stream()); }

void Check(OpKernelContext* ctx, int rc, const char* what) {
  if (rc)
    ctx->SetStatus(absl::InternalError(absl::StrCat(what, " failed with code ", rc, ": ", returnn_cuda_last_error())));
}

class NativeLstmBase : public OpKernel {
 public:
  explicit NativeLstmBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("direction", &direction_));
    OP_REQUIRES(ctx, direction_ == 1 || direction_ == -1,
                absl::InvalidArgumentError(absl::StrCat("NativeLstm: attr direction must be 1 or -1, got ", direction_)));
  }

 protected:
  int64_t direction_ = 1;
};

class NativeLstmGpu : public NativeLstmBase {
 public:
  using NativeLstmBase::NativeLstmBase;

  void Compute(OpKernelContext* ctx) override {
    const char* op = "NativeLstm";
    const int64_t B = Dim(ctx, op, 0, 0), T = Dim(ctx, op, 0, 1), n = Dim(ctx, op, 1, 0);
    const float* z = In(ctx, op, 0, "z", {B, T, 4 * n});
    const float* w_re = In(ctx, op, 1, "w_re", {n, 4 * n});
    const float* mask = In(ctx, op, 2, "mask", {B, T});
    const float* h0 = In(ctx, op, 3, "h0", {B, n});
    const float* c0 = In(ctx, op, 4, "c0", {B, n});
    float* y = Out(ctx, 0, {B, T, n});
    float* hf = Out(ctx, 1, {B, n});
    float* cf = Out(ctx, 2, {B, n});
    float* gates = Out(ctx, 3, {B, T, 4 * n});
    float* cells = Out(ctx, 4, {B, T, n});
    float* hp = Out(ctx, 5, {B, T, n});
    if (!ctx->status().ok() || n == 0) return;
    Check(ctx,
          returnn_lstm_fwd_cuda(Stream(ctx), static_cast<int>(B), static_cast<int>(T), static_cast<int>(n),
                                static_cast<int>(direction_), z, w_re, mask, h0, c0, y, hf, cf, gates, cells, hp),
          "NativeLstm GPU forward kernel");
  }
};

class NativeLstmGradGpu : public NativeLstmBase {
 public:
  using NativeLstmBase::NativeLstmBase;

  void Compute(OpKernelContext* ctx) override {
    const char* op = "NativeLstmGrad";
    const int64_t B = Dim(ctx, op, 4, 0), T = Dim(ctx, op, 4, 1), n = Dim(ctx, op, 0, 0);
    const float* w_re = In(ctx, op, 0, "w_re", {n, 4 * n});
    const float* mask = In(ctx, op, 1, "mask", {B, T});
    const float* h0 = In(ctx, op, 2, "h0", {B, n});
    const float* c0 = In(ctx, op, 3, "c0", {B, n});
    const float* gates = In(ctx, op, 4, "gates", {B, T, 4 * n});
    const float* cells = In(ctx, op, 5, "cells", {B, T, n});
    const float* hp = In(ctx, op, 6, "h_prev", {B, T, n});
    const float* dy = In(ctx, op, 7, "dy", {B, T, n});
    const float* dhf = In(ctx, op, 8, "dh_final", {B, n});
    const float* dcf = In(ctx, op, 9, "dc_final", {B, n});
    float* dz = Out(ctx, 0, {B, T, 4 * n});
    float* dw = Out(ctx, 1, {n, 4 * n});
    float* dh0 = Out(ctx, 2, {B, n});
    float* dc0 = Out(ctx, 3, {B, n});
    if (!ctx->status().ok() || n == 0) return;
    Tensor workspace;  // the recurrent part of dh of one step, from TF's allocator (its pool holds the GPU memory)
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT, TensorShape({B, n}), &workspace));
    Check(ctx,
          returnn_lstm_bwd_cuda(Stream(ctx), static_cast<int>(B), static_cast<int>(T), static_cast<int>(n),
                                static_cast<int>(direction_), w_re, mask, h0, c0, gates, cells, hp, dy, dhf, dcf, dz,
                                dw, dh0, dc0, workspace.flat<float>().data()),
          "NativeLstmGrad GPU kernel");
  }
};

REGISTER_KERNEL_BUILDER(Name("ReturnnNativeLstm").Device(tensorflow::DEVICE_GPU), NativeLstmGpu);
REGISTER_KERNEL_BUILDER(Name("ReturnnNativeLstmGrad").Device(tensorflow::DEVICE_GPU), NativeLstmGradGpu);

}  // namespace
