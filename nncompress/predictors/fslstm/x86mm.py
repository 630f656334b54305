"""An exact int8 matrix product for x86-64 CPUs with AVX2 (vpmaddwd), for the CPUs where
torch._int_mm has no int8 dot-product units to run on (no AVX-512 VNNI, no AMX) and falls back
to a plain loop.

The int8 values are widened to int16; vpmaddwd multiplies 16 pairs of int16 and adds each
two neighbouring products into one int32 (|a w + a' w'| <= 2 * 127 * 127), and the int32 sums
of K terms stay below 127 * 127 * K < 2**31: the same integers as any other exact product, in
any order. The kernel is LLVM IR written here and compiled at run time by llvmlite (the LLVM
that numba uses; no compiler is needed), blocks of 6 rows by 16 columns held in 12 registers.
Weights are packed once per matrix: (K, N) -> (N / 8, K / 2, 8, 2) int16, so that one 32-byte
load holds two rows of k for 8 columns; each activation pair (a[k], a[k + 1]) is broadcast.

`available()` says whether it runs here (x86-64, AVX2, llvmlite); exact.int8_product chooses
it only where it is the fastest of the exact products (exact._choose_cpu_product).
"""
from __future__ import annotations

import ctypes
import platform
import threading

import numpy as np

ROWS = 6            # rows of activations per block
COLS = 2            # 8-column vectors per block

_LOCK = threading.Lock()
_STATE: dict = {}


def _ir() -> str:
    """The kernel: o[s, n] = sum_k a[s, k] w[k, n] for S a multiple of ROWS, N / 8 a multiple
    of COLS; a as int32 words of int16 pairs (S, K2), w packed (N8, K2) <16 x i16>."""
    R, C = ROWS, COLS
    L = ["declare <8 x i32> @llvm.x86.avx2.pmadd.wd(<16 x i16>, <16 x i16>)",
         "define void @mm16(i32* noalias %a, <16 x i16>* noalias %w, i32* noalias %o, "
         "i64 %S, i64 %K2, i64 %N8, i64 %ldo) {",
         "entry:", "  br label %srow",
         "srow:", "  %s = phi i64 [0, %entry], [%s.next, %sdone]", "  br label %ncol",
         "ncol:", "  %nb = phi i64 [0, %srow], [%nb.next, %kdone]", "  br label %kloop",
         "kloop:", "  %k = phi i64 [0, %ncol], [%k.next, %kloop]"]
    for r in range(R):
        for c in range(C):
            L.append(f"  %acc{r}_{c} = phi <8 x i32> [zeroinitializer, %ncol], "
                     f"[%nacc{r}_{c}, %kloop]")
    for c in range(C):
        L += [f"  %nbc{c} = add i64 %nb, {c}",
              f"  %wia{c} = mul i64 %nbc{c}, %K2",
              f"  %wi{c} = add i64 %wia{c}, %k",
              f"  %wp{c} = getelementptr <16 x i16>, <16 x i16>* %w, i64 %wi{c}",
              f"  %wv{c} = load <16 x i16>, <16 x i16>* %wp{c}, align 2"]
    for r in range(R):
        L += [f"  %sr{r} = add i64 %s, {r}",
              f"  %aia{r} = mul i64 %sr{r}, %K2",
              f"  %ai{r} = add i64 %aia{r}, %k",
              f"  %ap{r} = getelementptr i32, i32* %a, i64 %ai{r}",
              f"  %ax{r} = load i32, i32* %ap{r}, align 4",
              f"  %ins{r} = insertelement <8 x i32> undef, i32 %ax{r}, i32 0",
              f"  %spl{r} = shufflevector <8 x i32> %ins{r}, <8 x i32> undef, "
              "<8 x i32> zeroinitializer",
              f"  %bv{r} = bitcast <8 x i32> %spl{r} to <16 x i16>"]
        for c in range(C):
            L += [f"  %pm{r}_{c} = call <8 x i32> @llvm.x86.avx2.pmadd.wd(<16 x i16> %bv{r}, "
                  f"<16 x i16> %wv{c})",
                  f"  %nacc{r}_{c} = add <8 x i32> %acc{r}_{c}, %pm{r}_{c}"]
    L += ["  %k.next = add i64 %k, 1", "  %kc = icmp slt i64 %k.next, %K2",
          "  br i1 %kc, label %kloop, label %kdone", "kdone:",
          "  %col = mul i64 %nb, 8"]
    for r in range(R):
        L += [f"  %orow{r} = add i64 %s, {r}", f"  %ob{r} = mul i64 %orow{r}, %ldo",
              f"  %obc{r} = add i64 %ob{r}, %col"]
        for c in range(C):
            L += [f"  %oi{r}_{c} = add i64 %obc{r}, {8 * c}",
                  f"  %op{r}_{c} = getelementptr i32, i32* %o, i64 %oi{r}_{c}",
                  f"  %ov{r}_{c} = bitcast i32* %op{r}_{c} to <8 x i32>*",
                  f"  store <8 x i32> %nacc{r}_{c}, <8 x i32>* %ov{r}_{c}, align 4"]
    L += [f"  %nb.next = add i64 %nb, {C}", "  %nc = icmp slt i64 %nb.next, %N8",
          "  br i1 %nc, label %ncol, label %sdone", "sdone:",
          f"  %s.next = add i64 %s, {R}", "  %sc = icmp slt i64 %s.next, %S",
          "  br i1 %sc, label %srow, label %exit", "exit:", "  ret void", "}"]
    return "\n".join(L)


def _build():
    """The compiled kernel as a ctypes function, or None where it cannot run here."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        import llvmlite.binding as llvm
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        feats = llvm.get_host_cpu_features()
        if not feats.get("avx2", False):
            return None
        mod = llvm.parse_assembly(_ir())
        mod.verify()
        tm = llvm.Target.from_default_triple().create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=feats.flatten(), opt=3)
        pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
        pb.getModulePassManager().run(mod, pb)
        engine = llvm.create_mcjit_compiler(mod, tm)
        engine.finalize_object()
        fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                              ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                              ctypes.c_int64)(engine.get_function_address("mm16"))
    except Exception:       # no llvmlite, an LLVM without this intrinsic, ...: not here
        return None
    return engine, fn


def _kernel():
    with _LOCK:
        if "fn" not in _STATE:
            built = _build()
            _STATE["engine"], _STATE["fn"] = built if built else (None, None)
        return _STATE["fn"]


def available() -> bool:
    return _kernel() is not None


class Packed:
    """A (K, N) int8 matrix packed for the kernel (K and N padded with zeros)."""

    def __init__(self, w8: np.ndarray):
        w8 = np.asarray(w8)
        K, N = w8.shape
        self.K, self.N = K, N
        K2 = (K + 1) // 2
        N8 = -(-N // (8 * COLS)) * COLS
        w = np.zeros((2 * K2, 8 * N8), dtype=np.int16)
        w[:K, :N] = w8
        self.K2, self.N8 = K2, N8
        self.data = np.ascontiguousarray(w.reshape(K2, 2, N8, 8).transpose(2, 0, 3, 1))


def product(a8: np.ndarray, w: Packed) -> np.ndarray:
    """(S, K) int8 activations times the packed (K, N) matrix: (S, N) int32 sums, exact."""
    fn = _kernel()
    if fn is None:
        raise RuntimeError("the AVX2 int8 product does not run on this machine")
    S, K = a8.shape
    if K != w.K:
        raise ValueError(f"shapes ({S}, {K}) and ({w.K}, {w.N}) do not multiply")
    Sp = -(-S // ROWS) * ROWS
    a = np.zeros((max(Sp, ROWS), 2 * w.K2), dtype=np.int16)
    a[:S, :K] = a8
    out = np.empty((a.shape[0], 8 * w.N8), dtype=np.int32)
    fn(a.ctypes.data, w.data.ctypes.data, out.ctypes.data, a.shape[0], w.K2, w.N8,
       out.shape[1])
    if out.shape[1] == w.N:
        return out[:S]
    return np.ascontiguousarray(out[:S, :w.N])
