// TensorFlow binding of NativeLstm: ops ReturnnNativeLstm and ReturnnNativeLstmGrad calling the kernels of lstm.h.
#include "lstm.h"

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
namespace errors = tensorflow::errors;
namespace si = tensorflow::shape_inference;

namespace {

absl::Status LstmShape(si::InferenceContext* c) {
  si::ShapeHandle z, w_re;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &z));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &w_re));
  si::DimensionHandle B = c->Dim(z, 0), T = c->Dim(z, 1), n4 = c->Dim(z, 2), n = c->Dim(w_re, 0);
  c->set_output(0, c->MakeShape({B, T, n}));
  c->set_output(1, c->MakeShape({B, n}));
  c->set_output(2, c->MakeShape({B, n}));
  c->set_output(3, c->MakeShape({B, T, n4}));
  c->set_output(4, c->MakeShape({B, T, n}));
  c->set_output(5, c->MakeShape({B, T, n}));
  return absl::OkStatus();
}

absl::Status LstmGradShape(si::InferenceContext* c) {
  si::ShapeHandle gates;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 3, &gates));
  c->set_output(0, gates);
  c->set_output(1, c->input(0));
  c->set_output(2, c->input(2));
  c->set_output(3, c->input(3));
  return absl::OkStatus();
}

bool SameShape(const Tensor& t, std::initializer_list<int64_t> dims) {
  if (t.dims() != static_cast<int>(dims.size())) return false;
  int i = 0;
  for (int64_t d : dims)
    if (t.dim_size(i++) != d) return false;
  return true;
}

#define RN_CHECK_SHAPE(ctx, t, name, ...)                                                                     \
  OP_REQUIRES(ctx, SameShape(t, {__VA_ARGS__}),                                                              \
              errors::InvalidArgument("NativeLstm: input '", name, "' has shape ", t.shape().DebugString(), \
                                      ", expected (" #__VA_ARGS__ ")"))

class NativeLstmOp : public OpKernel {
 public:
  explicit NativeLstmOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("direction", &direction_));
    OP_REQUIRES(ctx, direction_ == 1 || direction_ == -1,
                errors::InvalidArgument("NativeLstm: direction must be 1 or -1, got ", direction_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor &z = ctx->input(0), &w_re = ctx->input(1), &mask = ctx->input(2), &h0 = ctx->input(3),
                 &c0 = ctx->input(4);
    OP_REQUIRES(ctx, z.dims() == 3 && w_re.dims() == 2,
                errors::InvalidArgument("NativeLstm: z must be (B, T, 4n) and w_re (n, 4n), got ",
                                        z.shape().DebugString(), " and ", w_re.shape().DebugString()));
    const int64_t B = z.dim_size(0), T = z.dim_size(1), n = w_re.dim_size(0);
    RN_CHECK_SHAPE(ctx, z, "z", B, T, 4 * n);
    RN_CHECK_SHAPE(ctx, w_re, "w_re", n, 4 * n);
    RN_CHECK_SHAPE(ctx, mask, "mask", B, T);
    RN_CHECK_SHAPE(ctx, h0, "h0", B, n);
    RN_CHECK_SHAPE(ctx, c0, "c0", B, n);
    Tensor *y, *hf, *cf, *gates, *cells, *hp;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, T, n}), &y));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B, n}), &hf));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, n}), &cf));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({B, T, 4 * n}), &gates));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({B, T, n}), &cells));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(5, TensorShape({B, T, n}), &hp));
    if (n == 0) return;
    int rc = returnn_lstm_fwd_cpu(
        static_cast<int>(B), static_cast<int>(T), static_cast<int>(n), direction_, z.flat<float>().data(),
        w_re.flat<float>().data(), mask.flat<float>().data(), h0.flat<float>().data(), c0.flat<float>().data(),
        y->flat<float>().data(), hf->flat<float>().data(), cf->flat<float>().data(), gates->flat<float>().data(),
        cells->flat<float>().data(), hp->flat<float>().data());
    OP_REQUIRES(ctx, rc == 0, errors::Internal("NativeLstm forward kernel failed with code ", rc));
  }

 private:
  int direction_ = 1;
};

class NativeLstmGradOp : public OpKernel {
 public:
  explicit NativeLstmGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("direction", &direction_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor &w_re = ctx->input(0), &mask = ctx->input(1), &h0 = ctx->input(2), &c0 = ctx->input(3),
                 &gates = ctx->input(4), &cells = ctx->input(5), &hp = ctx->input(6), &dy = ctx->input(7),
                 &dhf = ctx->input(8), &dcf = ctx->input(9);
    OP_REQUIRES(ctx, gates.dims() == 3 && w_re.dims() == 2,
                errors::InvalidArgument("NativeLstmGrad: gates must be (B, T, 4n) and w_re (n, 4n)"));
    const int64_t B = gates.dim_size(0), T = gates.dim_size(1), n = w_re.dim_size(0);
    RN_CHECK_SHAPE(ctx, gates, "gates", B, T, 4 * n);
    RN_CHECK_SHAPE(ctx, mask, "mask", B, T);
    RN_CHECK_SHAPE(ctx, h0, "h0", B, n);
    RN_CHECK_SHAPE(ctx, c0, "c0", B, n);
    RN_CHECK_SHAPE(ctx, cells, "cells", B, T, n);
    RN_CHECK_SHAPE(ctx, hp, "h_prev", B, T, n);
    RN_CHECK_SHAPE(ctx, dy, "dy", B, T, n);
    RN_CHECK_SHAPE(ctx, dhf, "dh_final", B, n);
    RN_CHECK_SHAPE(ctx, dcf, "dc_final", B, n);
    Tensor *dz, *dw, *dh0, *dc0;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, T, 4 * n}), &dz));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({n, 4 * n}), &dw));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, n}), &dh0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({B, n}), &dc0));
    if (n == 0) return;
    int rc = returnn_lstm_bwd_cpu(
        static_cast<int>(B), static_cast<int>(T), static_cast<int>(n), direction_, w_re.flat<float>().data(),
        mask.flat<float>().data(), h0.flat<float>().data(), c0.flat<float>().data(), gates.flat<float>().data(),
        cells.flat<float>().data(), hp.flat<float>().data(), dy.flat<float>().data(), dhf.flat<float>().data(),
        dcf.flat<float>().data(), dz->flat<float>().data(), dw->flat<float>().data(), dh0->flat<float>().data(),
        dc0->flat<float>().data());
    OP_REQUIRES(ctx, rc == 0, errors::Internal("NativeLstmGrad kernel failed with code ", rc));
  }

 private:
  int direction_ = 1;
};

}  // namespace

REGISTER_OP("ReturnnNativeLstm")
    .Input("z: float")
    .Input("w_re: float")
    .Input("mask: float")
    .Input("h0: float")
    .Input("c0: float")
    .Attr("direction: int = 1")
    .Output("y: float")
    .Output("h_final: float")
    .Output("c_final: float")
    .Output("gates: float")
    .Output("cells: float")
    .Output("h_prev: float")
    .SetShapeFn(LstmShape)
    .Doc("RETURNN NativeLSTM forward over a padded batch (B, T, 4n); gate blocks [cell in, input, forget, output].");

REGISTER_OP("ReturnnNativeLstmGrad")
    .Input("w_re: float")
    .Input("mask: float")
    .Input("h0: float")
    .Input("c0: float")
    .Input("gates: float")
    .Input("cells: float")
    .Input("h_prev: float")
    .Input("dy: float")
    .Input("dh_final: float")
    .Input("dc_final: float")
    .Attr("direction: int = 1")
    .Output("dz: float")
    .Output("dw_re: float")
    .Output("dh0: float")
    .Output("dc0: float")
    .SetShapeFn(LstmGradShape)
    .Doc("Gradient of ReturnnNativeLstm.");

REGISTER_KERNEL_BUILDER(Name("ReturnnNativeLstm").Device(DEVICE_CPU), NativeLstmOp);
REGISTER_KERNEL_BUILDER(Name("ReturnnNativeLstmGrad").Device(DEVICE_CPU), NativeLstmGradOp);
