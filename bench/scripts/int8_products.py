"""Exact int8-digit products (torch._int_mm) against float64 products of integers, one thread.

    python bench/scripts/int8_products.py

Prints, per (streams, K, N), whether the digit product gives float64's integers and both times
(docs/design.md, "Integer products, measured and not used")."""
import torch, time, numpy as np
from numba import njit
torch.set_num_threads(1)
from threadpoolctl import threadpool_limits
threadpool_limits(1)
def bench(f, n=30):
    f(); t=time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter()-t)/n
@njit
def split(a, out):   # a (S,K) int64 -> out (2S,K) int8 digits
    S,K=a.shape
    for s in range(S):
        for k in range(K):
            v=a[s,k]; hi=v>>8; lo=v-(hi<<8)-128
            out[s,k]=hi; out[S+s,k]=lo
@njit
def combine(P, cs, a_rows, N, shift, out):
    S2, N2 = P.shape; S=S2//2
    for s in range(S):
        rs=a_rows[s]
        for n in range(N):
            q1 = 256*np.int64(P[s,n]) + P[S+s,n] + 128*cs[n]
            q0 = 256*np.int64(P[s,N+n]) + P[S+s,N+n] + 128*cs[N+n]
            out[s,n] = (256*q1 + q0 + 128*rs) >> shift
rng=np.random.default_rng(0)
for S,K,N in ((16,128,512),(64,128,512),(256,128,512),(256,256,1024),(1024,256,1024)):
    a = rng.integers(-16384, 16385, size=(S,K)).astype(np.int64)
    w = rng.integers(-32767, 32768, size=(K,N)).astype(np.int64)
    wf = w.astype(np.float64)
    w1 = w>>8; w0 = w - (w1<<8) - 128
    W8n=np.ascontiguousarray(np.concatenate([w1,w0],1).astype(np.int8)); W8=torch.from_numpy(W8n)
    cs=np.concatenate([w1,w0],1).sum(0).astype(np.int64)
    A8=np.empty((2*S,K),np.int8); out=np.empty((S,N),np.int64)
    def f8():
        split(a, A8)
        P = torch._int_mm(torch.from_numpy(A8), W8).numpy()
        combine(P, cs, a.sum(1), N, 3, out)
        return out
    ref = np.floor((a.astype(np.float64) @ wf) * 2.0**-3).astype(np.int64)
    ok=np.array_equal(f8(), ref)
    A8t=torch.from_numpy(A8)
    tmm=bench(lambda: torch._int_mm(A8t, W8))
    t8=bench(f8); tf=bench(lambda: np.floor((a.astype(np.float64) @ wf) * 2.0**-3).astype(np.int64))
    print(f"S={S} K={K} N={N}: exact={ok} int8 total {t8*1e6:.0f}us (_int_mm {tmm*1e6:.0f}) f64 {tf*1e6:.0f}us  speedup {tf/t8:.2f}")
