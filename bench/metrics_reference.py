"""Independent numpy/scipy reference values for the generative-model metrics (FID, KID, Inception
Score, k-NN precision/recall), written to tests/fixtures/metrics_reference.json.

Usage: bench/.venv/bin/python bench/metrics_reference.py [--out tests/fixtures/metrics_reference.json]

Every input is drawn from numpy.random.default_rng(2026) (one generator, used in the order of the
cases below) and stored in the JSON next to the results, so a reader needs no RNG of its own. All
arithmetic is float64. Floats are written by Python's json module (shortest round-trip repr).

FID ("fid" cases) -- Frechet distance between Gaussians fitted to two feature sets x (m x d) and
y (n x d): mu = mean over rows, Sigma = np.cov(., rowvar=False) (normaliser n - 1).
  FID = ||mu_x - mu_y||^2 + tr Sigma_x + tr Sigma_y - 2 tr (Sigma_x Sigma_y)^(1/2).
  fidSqrtm      pytorch-fid src/pytorch_fid/fid_score.py `calculate_frechet_distance(mu1, sigma1,
                mu2, sigma2, eps=1e-6)` step for step: covmean = scipy.linalg.sqrtm(sigma1 @ sigma2,
                disp=False)[0]; if not all finite, retry with eps * I added to both covariances
                (sqrtmRetriedWithEps); if complex, take the real part (pytorch-fid raises when
                np.allclose(diag(covmean).imag, 0, atol=1e-3) fails; here that check is only
                recorded, as sqrtmImagCheckPassed, with sqrtmMaxImag = max |imag|). The trace of
                that real part is the trace term.
  fidEigen      the same distance through a symmetric eigen-form: S = Sigma_x^(1/2) from
                np.linalg.eigh(Sigma_x) with negative eigenvalues clipped to 0; M = S Sigma_y S
                (symmetrised, (M + M^T)/2); lambda = np.linalg.eigvalsh(M) clipped to >= 0;
                traceSqrt = sum sqrt(lambda). (M = S (Sigma_y S) and Sigma_x Sigma_y = (S Sigma_y) S
                share their eigenvalues, so both trace terms agree in exact arithmetic; with a
                singular covariance -- cases rank-deficient, one-dimensional-ish -- the Schur sqrtm
                of the singular product loses about half the digits, and the two differ by ~3e-8.)
  muDiffSquared = ||mu_x - mu_y||^2, traceX = tr Sigma_x, traceY = tr Sigma_y,
  traceSqrt     the eigen-form trace term; fidEigen = muDiffSquared + traceX + traceY - 2 traceSqrt.
  traceSqrtm    (extra) the sqrtm trace term used by fidSqrtm.

KID ("kid" cases) -- polynomial kernel k(a, b) = (a.b / d + 1)^3 (torch-fidelity
torch_fidelity/metric_kid.py `polynomial_kernel`, degree 3, gamma = 1/d, coef0 1).
  mmd2Unbiased  the unbiased u-statistic on the whole sets (m, n may differ):
                  1/(m(m-1)) sum_{i!=j} k(x_i,x_j) + 1/(n(n-1)) sum_{i!=j} k(y_i,y_j)
                  - 2/(mn) sum_{i,j} k(x_i,y_j).
  mmd2TorchFidelity  torch-fidelity `mmd2(K_XX, K_XY, K_YY)` with its default mmd_est="unbiased"
                (the call `polynomial_mmd` -> KID makes): (Kt_XX_sum + Kt_YY_sum)/(m(m-1))
                - 2 K_XY_sum/(m m), Kt_* = kernel-matrix sums without the diagonal. It requires
                m == n; for cases with m != n it is computed on the first min(m, n) rows of each
                set (torchFidelityRows). For m == n it equals mmd2Unbiased.
  mmd2UStatisticTorchFidelity  torch-fidelity `mmd2(..., mmd_est="u-statistic")` on the same
                rows: the cross term's diagonal is removed as well, -2 (K_XY_sum - tr K_XY)/(m(m-1)).
                (Not what KID uses by default; given because the two names are easily confused.)
  subsets / subsetIndicesY  kid_subsets = 4 subsets of size 40, each drawn as torch-fidelity
                `kid_features_to_metric` draws them (x indices, then y indices, rng.choice(n, 40,
                replace=False)) but with the shared default_rng(2026) instead of
                np.random.RandomState(rng_seed); the indices are stored.
  subsetMmd2    mmd2Unbiased of each subset pair (= torch-fidelity's per-subset polynomial_mmd),
  mean, std     np.mean and np.std (ddof = 0) of subsetMmd2, as torch-fidelity.

Inception Score ("inceptionScore" cases) -- torch-fidelity torch_fidelity/metric_isc.py
`isc_features_to_metric`, with samples_shuffle off (no permutation) and starting from posteriors
p(y|x) instead of logits: split i is rows [i*N//splits, (i+1)*N//splits) (torch-fidelity's
floor boundaries, not np.array_split; splitBoundaries gives them), q = the split's mean posterior,
  IS_split = exp( mean_rows sum_k p_k (log p_k - log q_k) ),
natural log, no epsilon (torch-fidelity uses log_softmax of logits, no epsilon); a term with
p_k = 0 is taken as 0 (the 0 log 0 = 0 convention of scipy.special.rel_entr), the smallest
handling that gives the one-hot case exactly 5. mean, std (ddof = 0) over splits. The "random"
case also stores its logits and torchFidelityFromLogits: the same numbers computed from the
logits with log-softmax, exactly as torch-fidelity does (minus the shuffle).

Precision/recall ("precisionRecall" cases) -- Kynkaanniemi et al. 2019, "Improved Precision and
Recall Metric for Assessing Generative Models" (kynkaat/improved-precision-and-recall-metric
`knn_precision_recall_features`; torch-fidelity `calculate_precision_recall_full`), Euclidean
distances computed directly (sqrt of summed squared differences), k = 3:
  radius_i = distance from point i to its k-th nearest other point of its own set (the
             (k+1)-th smallest entry of its distance row, the self-distance 0 included);
  precision = fraction of fake points f with d(f, r) <= radius_r for some real r;
  recall    = fraction of real points r with d(r, f) <= radius_f for some fake f (fake radii).
  precisionStrict / recallStrict: the same with "<", as the prdc package's `compute_prdc`.
  realRadii, fakeRadii, fakeInRealManifold, realInFakeManifold: the intermediate values.
"""

import argparse
import json
import pathlib
import warnings

import numpy as np
import scipy
import scipy.linalg
import scipy.special

SEED = 2026
NOTES = []


def tolist(a):
    return np.asarray(a, dtype=np.float64).tolist()


# ---------------------------------------------------------------- FID


def sqrtm_pytorch_fid(sigma1, sigma2, eps=1e-6):
    """pytorch-fid calculate_frechet_distance's covmean step; returns the trace and diagnostics."""
    caught = []
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        covmean, errest = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
        retried = False
        if not np.isfinite(covmean).all():
            retried = True
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset), disp=False)[0]
        caught = [str(x.message) for x in w if not issubclass(x.category, DeprecationWarning)]
    is_complex = bool(np.iscomplexobj(covmean))
    max_imag = float(np.max(np.abs(covmean.imag))) if is_complex else 0.0
    check = bool(np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)) if is_complex else True
    if is_complex:
        covmean = covmean.real
    return float(np.trace(covmean)), {
        "sqrtmRetriedWithEps": retried,
        "sqrtmComplex": is_complex,
        "sqrtmMaxImag": max_imag,
        "sqrtmImagCheckPassed": check,
        "sqrtmErrest": float(errest),
        "sqrtmWarnings": caught,
    }


def psd_sqrt(sigma):
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def fid_case(name, x, y):
    mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    diff = mu1 - mu2
    mu_diff2 = float(diff.dot(diff))
    tr1, tr2 = float(np.trace(s1)), float(np.trace(s2))
    tr_sqrtm, diag = sqrtm_pytorch_fid(s1, s2)
    fid_sqrtm = float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrtm)
    r = psd_sqrt(s1)
    m = r @ s2 @ r
    lam = np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)
    tr_sqrt = float(np.sqrt(lam).sum())
    fid_eigen = mu_diff2 + tr1 + tr2 - 2 * tr_sqrt
    return {
        "name": name,
        "x": tolist(x),
        "y": tolist(y),
        "fidSqrtm": fid_sqrtm,
        "fidEigen": fid_eigen,
        "muDiffSquared": mu_diff2,
        "traceX": tr1,
        "traceY": tr2,
        "traceSqrt": tr_sqrt,
        "traceSqrtm": tr_sqrtm,
        **diag,
    }


# ---------------------------------------------------------------- KID


def poly_kernel(a, b):
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def mmd2_u(x, y):
    m, n = len(x), len(y)
    kxx, kyy, kxy = poly_kernel(x, x), poly_kernel(y, y), poly_kernel(x, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.sum() / (m * n)
    )


def mmd2_torch_fidelity(x, y, mmd_est="unbiased"):
    """torch-fidelity metric_kid.mmd2 (unit_diagonal=False) on polynomial kernels of x, y."""
    K_XX, K_XY, K_YY = poly_kernel(x, x), poly_kernel(x, y), poly_kernel(y, y)
    m = K_XX.shape[0]
    assert K_XX.shape == K_XY.shape == K_YY.shape == (m, m)
    diag_X, diag_Y = np.diagonal(K_XX), np.diagonal(K_YY)
    Kt_XX_sum = (K_XX.sum(axis=1) - diag_X).sum()
    Kt_YY_sum = (K_YY.sum(axis=1) - diag_Y).sum()
    K_XY_sum = K_XY.sum(axis=0).sum()
    mmd2 = (Kt_XX_sum + Kt_YY_sum) / (m * (m - 1))
    if mmd_est == "unbiased":
        mmd2 -= 2 * K_XY_sum / (m * m)
    else:
        mmd2 -= 2 * (K_XY_sum - np.trace(K_XY)) / (m * (m - 1))
    return float(mmd2)


def kid_case(name, rng, x, y, subsets=4, subset_size=40):
    r = min(len(x), len(y))
    idx_x, idx_y, vals = [], [], []
    for _ in range(subsets):
        ix = rng.choice(len(x), subset_size, replace=False)
        iy = rng.choice(len(y), subset_size, replace=False)
        idx_x.append(ix.tolist())
        idx_y.append(iy.tolist())
        vals.append(mmd2_u(x[ix], y[iy]))
    vals = np.array(vals)
    return {
        "name": name,
        "x": tolist(x),
        "y": tolist(y),
        "mmd2Unbiased": mmd2_u(x, y),
        "mmd2TorchFidelity": mmd2_torch_fidelity(x[:r], y[:r]),
        "mmd2UStatisticTorchFidelity": mmd2_torch_fidelity(x[:r], y[:r], "u-statistic"),
        "torchFidelityRows": r,
        "subsetSize": subset_size,
        "subsets": idx_x,
        "subsetIndicesY": idx_y,
        "subsetMmd2": vals.tolist(),
        "mean": float(np.mean(vals)),
        "std": float(np.std(vals)),
    }


# ---------------------------------------------------------------- Inception Score


def split_bounds(n, splits):
    return [[i * n // splits, (i + 1) * n // splits] for i in range(splits)]


def is_from_posteriors(p, splits):
    scores = []
    for a, b in split_bounds(len(p), splits):
        pc = p[a:b]
        q = pc.mean(axis=0, keepdims=True)
        kl = scipy.special.rel_entr(pc, q).sum(axis=1)  # p log(p/q), 0 where p == 0
        scores.append(float(np.exp(kl.mean())))
    return scores


def is_from_logits(logits, splits):
    """torch-fidelity isc_features_to_metric without the shuffle."""
    log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    p = np.exp(log_p)
    scores = []
    for a, b in split_bounds(len(p), splits):
        q = p[a:b].mean(axis=0, keepdims=True)
        kl = (p[a:b] * (log_p[a:b] - np.log(q))).sum(axis=1).mean()
        scores.append(float(np.exp(kl)))
    return scores


def is_case(name, posteriors, splits, logits=None):
    s = is_from_posteriors(posteriors, splits)
    out = {
        "name": name,
        "posteriors": tolist(posteriors),
        "splits": splits,
        "splitBoundaries": split_bounds(len(posteriors), splits),
        "mean": float(np.mean(s)),
        "std": float(np.std(s)),
        "perSplit": s,
    }
    if logits is not None:
        t = is_from_logits(logits, splits)
        out["logits"] = tolist(logits)
        out["torchFidelityFromLogits"] = {"mean": float(np.mean(t)), "std": float(np.std(t)), "perSplit": t}
    return out


# ---------------------------------------------------------------- precision / recall


def dists(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1))


def knn_radii(a, k):
    return np.sort(dists(a, a), axis=1)[:, k]  # index k: (k+1)-th smallest, self 0 included


def pr_case(name, real, fake, k=3, extra=None):
    rr, fr = knn_radii(real, k), knn_radii(fake, k)
    d = dists(fake, real)  # fake x real
    fake_in = (d <= rr[None, :]).any(axis=1)
    real_in = (d.T <= fr[None, :]).any(axis=1)
    return {
        "name": name,
        "real": tolist(real),
        "fake": tolist(fake),
        "k": k,
        "precision": float(fake_in.mean()),
        "recall": float(real_in.mean()),
        "precisionStrict": float((d < rr[None, :]).any(axis=1).mean()),
        "recallStrict": float((d.T < fr[None, :]).any(axis=1).mean()),
        "realRadii": tolist(rr),
        "fakeRadii": tolist(fr),
        "fakeInRealManifold": fake_in.astype(int).tolist(),
        "realInFakeManifold": real_in.astype(int).tolist(),
        **(extra or {}),
    }


# ---------------------------------------------------------------- cases


def build():
    rng = np.random.default_rng(SEED)

    fid = []
    x = rng.standard_normal((300, 8))
    a = rng.standard_normal((8, 8)) / np.sqrt(8)
    y = rng.standard_normal((250, 8)) @ a + 0.3
    fid.append(fid_case("gaussians", x, y))
    x = rng.standard_normal((100, 8))
    fid.append(fid_case("same", x, x.copy()))
    fid.append(fid_case("rank-deficient", rng.standard_normal((6, 8)), rng.standard_normal((7, 8))))
    x = rng.standard_normal((50, 3))
    x[:, 2] = x[:, 0]
    fid.append(fid_case("one-dimensional-ish", x, rng.standard_normal((60, 3))))

    kid = []
    x = rng.standard_normal((120, 8))
    y = rng.standard_normal((100, 8)) + 0.5
    kid.append(kid_case("shifted", rng, x, y))
    z = rng.standard_normal((200, 8))
    kid.append(kid_case("halves", rng, z[:100], z[100:]))
    x = rng.standard_normal((80, 6))
    y = 1.2 * rng.standard_normal((80, 6)) + 0.2
    kid.append(kid_case("equal-sizes", rng, x, y))

    isc = []
    logits = 2.0 * rng.standard_normal((100, 10))
    post = np.exp(logits - scipy.special.logsumexp(logits, axis=1, keepdims=True))
    isc.append(is_case("random", post, 5, logits=logits))
    isc.append(is_case("uniform", np.full((50, 10), 0.1), 5))
    isc.append(is_case("one-hot-balanced", np.eye(5)[np.arange(50) % 5], 1))
    # 97 images in 5 splits: parts of 19 or 20 at torch-fidelity's floor boundaries.
    isc.append(is_case("uneven-splits", post[:97], 5, logits=logits[:97]))

    pr = []
    real = rng.standard_normal((150, 4))
    pr.append(pr_case("shifted", real, rng.standard_normal((120, 4)) + 0.7))
    real = rng.standard_normal((100, 4))
    pr.append(pr_case("same", real, real.copy()))
    real = rng.standard_normal((150, 4))
    src = rng.choice(150, 5, replace=False)
    fake = real[np.tile(src, 20)] + 1e-3 * rng.standard_normal((100, 4))
    pr.append(pr_case("collapsed", real, fake, extra={"collapsedSourceIndices": src.tolist()}))

    for c in fid:
        NOTES.append(f"FID case {c['name']}: fidSqrtm - fidEigen = {c['fidSqrtm'] - c['fidEigen']:.3g}"
                     f" (sqrtm complex={c['sqrtmComplex']}, max|imag|={c['sqrtmMaxImag']:.3g}).")
        if c["sqrtmRetriedWithEps"] or not c["sqrtmImagCheckPassed"] or c["sqrtmWarnings"]:
            NOTES.append(
                f"FID case {c['name']}: sqrtm retried with eps={c['sqrtmRetriedWithEps']}, complex="
                f"{c['sqrtmComplex']}, max|imag|={c['sqrtmMaxImag']:.3g}, pytorch-fid imag check "
                f"passed={c['sqrtmImagCheckPassed']}, warnings={c['sqrtmWarnings']}."
            )
    return fid, kid, isc, pr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent.parent
                                         / "tests/fixtures/metrics_reference.json"))
    args = ap.parse_args()
    fid, kid, isc, pr = build()
    notes = [
        "All inputs from numpy.random.default_rng(2026); float64 throughout; see the docstring of "
        "bench/metrics_reference.py for every formula.",
        "FID: fidSqrtm follows pytorch-fid calculate_frechet_distance with real scipy.linalg.sqrtm "
        "(disp=False; that argument is deprecated since SciPy 1.16, the DeprecationWarning is "
        "suppressed), recording instead of raising on a large imaginary part; fidEigen is the "
        "symmetric form via eigh(Sigma_x)^(1/2) Sigma_y eigh(Sigma_x)^(1/2) with negative "
        "eigenvalues clipped to 0.",
        "KID: torch-fidelity's mmd2 default is mmd_est='unbiased', which keeps the cross-term "
        "diagonal (-2 K_XY_sum/m^2) and so equals mmd2Unbiased when m == n; that default is "
        "mmd2TorchFidelity. The variant that removes the cross diagonal ((K_XY_sum - tr K_XY)/"
        "(m(m-1))) is torch-fidelity's mmd_est='u-statistic', stored as "
        "mmd2UStatisticTorchFidelity. Case 'shifted' has m=120, n=100: both torch-fidelity fields "
        "use the first 100 rows of each set. Subset indices drawn with the shared default_rng "
        "(x then y, choice without replacement), not torch-fidelity's RandomState.",
        "IS: torch-fidelity isc_features_to_metric without the shuffle; split i = rows "
        "[i*N//splits, (i+1)*N//splits); KL with natural log and no epsilon, 0*log(0) = 0 "
        "(scipy.special.rel_entr); this alone gives the one-hot case exactly 5.",
        "Precision/recall: Kynkaanniemi et al. 2019 with '<=' (as their code and torch-fidelity); "
        "the *Strict fields use '<' as prdc's compute_prdc.",
    ] + NOTES
    doc = {
        "generatedBy": "bench/metrics_reference.py",
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__},
        "seed": SEED,
        "notes": " ".join(notes),
        "fid": fid,
        "kid": kid,
        "inceptionScore": isc,
        "precisionRecall": pr,
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, allow_nan=False) + "\n")

    back = json.loads(out.read_text())
    print(f"wrote {out} ({out.stat().st_size} bytes), numpy {np.__version__}, scipy {scipy.__version__}")
    for c in back["fid"]:
        print(f"fid {c['name']}: sqrtm {c['fidSqrtm']!r} eigen {c['fidEigen']!r} mu2 {c['muDiffSquared']!r}"
              f" trX {c['traceX']!r} trY {c['traceY']!r} trSqrt {c['traceSqrt']!r} trSqrtm {c['traceSqrtm']!r}"
              f" retried {c['sqrtmRetriedWithEps']} complex {c['sqrtmComplex']} maxImag {c['sqrtmMaxImag']:.3g}")
    for c in back["kid"]:
        print(f"kid {c['name']}: u {c['mmd2Unbiased']!r} tf {c['mmd2TorchFidelity']!r}"
              f" tfU {c['mmd2UStatisticTorchFidelity']!r} subsets {c['subsetMmd2']} mean {c['mean']!r} std {c['std']!r}")
    for c in back["inceptionScore"]:
        extra = f" fromLogits {c['torchFidelityFromLogits']['mean']!r}" if "logits" in c else ""
        print(f"is {c['name']}: mean {c['mean']!r} std {c['std']!r} perSplit {c['perSplit']}{extra}")
    for c in back["precisionRecall"]:
        print(f"pr {c['name']}: precision {c['precision']!r} recall {c['recall']!r}"
              f" strict {c['precisionStrict']!r}/{c['recallStrict']!r}")
    print("notes:", back["notes"])


if __name__ == "__main__":
    main()
