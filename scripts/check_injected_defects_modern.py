"""Show that the modern-proxy and ensemble checks can fail: inject one defect at a time into
the source, run the test that should catch it, restore the file (also on error).

    python scripts/check_injected_defects_modern.py      # prints CAUGHT / MISSED per defect

Each entry: (defect, file, original text, defective text, test). Exit status 1 if any is missed.
Run it on a clean checkout: it rewrites source files while it runs.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
M = [
 ("normal from uniform: +0.25 instead of +0.5", "zcfast/proxies/_random.py", "return torch.special.ndtri((m + 0.5) / 16777216.0)", "return torch.special.ndtri((m + 0.25) / 16777216.0)", "tests/test_modern_proxies.py::test_normal_draws_are_the_inverse_cdf_of_the_uniform_stream"),
 ("kaiming std 1/fan_in", "zcfast/proxies/_random.py", "math.sqrt(2.0 / _fan_in(m))", "math.sqrt(1.0 / _fan_in(m))", "tests/test_modern_proxies.py::test_reinit_distributions_and_determinism"),
 ("reinit from the global RNG", "zcfast/proxies/_random.py", "z = normal(w.numel(), arch, REINIT + int(draw) * _DRAW_STRIDE + s, seed)", "z = torch.randn(w.numel(), dtype=torch.float64)", "tests/test_modern_proxies.py::test_deterministic_per_seed_and_arch"),
 ("zico sample std", "zcfast/proxies/gradstats.py", "std = g.std(0, unbiased=False)", "std = g.std(0, unbiased=True)", "tests/test_modern_proxies.py::test_zico_two_layer_linear_closed_form"),
 ("zico extra batch = scoring batch (find_measures)", "zcfast/proxies/__init__.py", "(x, y), extra = groups[0], groups[1:]", "(x, y), extra = groups[0], groups[:1]", "tests/test_modern_proxies.py::test_find_measures_takes_zicos_second_batch_from_the_loader"),
 ("epe without abs", "zcfast/proxies/gradstats.py", "s = float(np.sum(np.log(np.abs(corr) + 1e-5)))", "s = float(np.sum(np.log(corr + 1.00001)))", "tests/test_modern_proxies.py::test_epe_nas_relu_net_closed_form"),
 ("epe NaN replaced", "zcfast/proxies/gradstats.py", "        return float(np.abs(vals).sum())", "        return float(np.nansum(np.abs(vals)))", "tests/test_modern_proxies.py::test_nan_and_inf_are_reported"),
 ("az entropy uncentred", "zcfast/proxies/az_nas.py", "    x = x - x.mean(0, keepdim=True)\n", "", "tests/test_modern_proxies.py::test_spectral_entropy_closed_form"),
 ("az trainability without 1/s", "zcfast/proxies/az_nas.py", "return 2.0 - s - 1.0 / (s + 1e-6)", "return 1.0 - s", "tests/test_modern_proxies.py::test_block_trainability_linear_and_downsampling_blocks"),
 ("az progressivity max", "zcfast/proxies/az_nas.py", "else min(diffs)", "else max(diffs)", "tests/test_modern_proxies.py::test_az_components_on_a_staged_network"),
 ("vkdnw true Fisher L^T J", "zcfast/proxies/vkdnw.py", "a = categorical_cholesky(prob) @ jac.double()", "a = categorical_cholesky(prob).transpose(1, 2) @ jac.double()", "tests/test_modern_proxies.py::test_fisher_matrix_is_the_codes_L_J_and_decile_entropy"),
 ("vkdnw conv element offset", "zcfast/proxies/vkdnw.py", "win = xin[:, 0 : sh * (ho - 1) + 1 : sh, 0 : sw * (wo - 1) + 1 : sw]", "win = xin[:, 1 : sh * (ho - 1) + 2 : sh, 0 : sw * (wo - 1) + 1 : sw]", "tests/test_modern_proxies.py::test_vkdnw_jacobian_hooks_equal_the_generic_reference"),
 ("vkdnw cholesky sign", "zcfast/proxies/vkdnw.py", "low = -p[:, :, None] * ratio[:, None, :]", "low = p[:, :, None] * ratio[:, None, :]", "tests/test_modern_proxies.py::test_categorical_cholesky"),
 ("meco: no stem extra count", "zcfast/proxies/meco.py", "extra = {net.stem: 1}", "extra = {}", "tests/test_modern_proxies.py::test_meco_counts_the_authors_module_tree_on_nb201"),
 ("meco: largest eigenvalue", "zcfast/proxies/meco.py", "return float(torch.linalg.eigvalsh(corr).min())", "return float(torch.linalg.eigvalsh(corr).max())", "tests/test_modern_proxies.py::test_meco_closed_form_two_channels"),
 ("swap: >= 0 fires", "zcfast/proxies/swap.py", "acts.append((out.detach() > 0)", "acts.append((out.detach() >= 0)", "tests/test_modern_proxies.py::test_swap_counts_distinct_patterns_by_hand"),
 ("zen momentum 0.2", "zcfast/proxies/zen.py", "MOMENTUM = 0.1 ", "MOMENTUM = 0.2 ", "tests/test_modern_proxies.py::test_zen_closed_form_with_running_variance"),
 ("proxy runs on the caller's network", "zcfast/proxies/__init__.py", "args = (net_c, inputs, targets, loss_fn, split) + ((ctx,) if p.ctx else ())", "args = (net if p.ctx else net_c, inputs, targets, loss_fn, split) + ((ctx,) if p.ctx else ())", "tests/test_modern_proxies.py::test_caller_network_untouched"),
 ("ensemble NaN ranked highest", "zcfast/proxies/ensemble.py", "s = np.where(np.isnan(s), -np.inf, s)", "s = np.where(np.isnan(s), np.inf, s)", "tests/test_ensembles.py::test_ranks_logrank_meanrank_by_hand"),
 ("vote strict majority", "zcfast/proxies/ensemble.py", "        win = gt >= need", "        win = gt > need", "tests/test_ensembles.py::test_vote_copeland_by_hand"),
 ("notebook vote strict majority", "zcfast/proxies/ensemble.py", "gt = (blk[:, None, :] - s[None, :, :] > 0).sum(2) >= k / 2.0", "gt = (blk[:, None, :] - s[None, :, :] > 0).sum(2) > k / 2.0", "tests/test_ensembles.py::test_pairwise_vote_agreement_matches_the_notebook_loop"),
 ("hit rate: ties all in", "zcfast/correlate.py", "p[tied] = (k - above.sum()) / tied.sum()", "p[tied] = 1.0", "tests/test_ensembles.py::test_hit_rate_and_sizes"),
 ("top10 floor", "zcfast/correlate.py", "k = max(1, math.ceil(frac * len(target)))", "k = max(1, math.floor(frac * len(target)))", "tests/test_ensembles.py::test_top10_spearman_by_hand"),
 ("ensemble over the last rows only", "zcfast/scoring.py", "        df[name] = _ens.evaluate(name, {m: df[m].to_numpy(dtype=np.float64) for m in members})", "        df[name] = np.concatenate([[np.nan], _ens.evaluate(name, {m: df[m].to_numpy(dtype=np.float64)[1:] for m in members})])", "tests/test_ensembles.py::test_score_and_correlate_with_ensembles"),
 ("members not stored", "zcfast/scoring.py", "    writer = ScoreWriter(out, meta, per_model, resume=resume)", "    writer = ScoreWriter(out, meta, [p for p in per_model if p in names], resume=resume)", "tests/test_ensembles.py::test_score_and_correlate_with_ensembles"),
]
res = []
for desc, f, old, new, test in M:
    src = (ROOT / f).read_text()
    assert src.count(old) == 1, (desc, src.count(old))
    (ROOT / f).write_text(src.replace(old, new))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", test], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    finally:
        (ROOT / f).write_text(src)
    caught = r.returncode != 0
    res.append((desc, test.split("::")[1], caught))
    print(f"{'CAUGHT' if caught else 'MISSED'}  {desc}  ->  {test.split('::')[1]}", flush=True)
sys.exit(0 if all(c for _, _, c in res) else 1)
