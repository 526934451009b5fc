// One fused I-FGSM step:
//   out = clamp(centre + clamp((x - alpha*sign(grad)) - centre, -eps, eps), 0, 1).
//
// Bit-identical to the torch reference in fp32 (kernels/ifgsm_step.py), so the operation order is
// fixed and spelled with the *_rn intrinsics: nvcc and NVRTC may otherwise contract a multiply and
// an add into an FMA.  The clamps are comparisons, not fminf/fmaxf, because those drop a NaN where
// torch.clamp keeps it.  sign() is torch's: +1, -1, and 0 for +-0 and NaN.
//
// Needs only what NVRTC accepts (no host headers), so the loader can compile it at run time.

extern "C" __global__ void sign_step_project(const float* x, const float* grad, const float* centre,
                                             float* out, float alpha, float eps, long long n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = grad[i];
        const float s = g > 0.0f ? 1.0f : (g < 0.0f ? -1.0f : 0.0f);
        const float c = centre[i];
        float d = __fsub_rn(__fsub_rn(x[i], __fmul_rn(alpha, s)), c);
        d = d < -eps ? -eps : (d > eps ? eps : d);
        float r = __fadd_rn(c, d);
        r = r < 0.0f ? 0.0f : (r > 1.0f ? 1.0f : r);
        out[i] = r;
    }
}
