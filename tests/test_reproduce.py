"""The paper's experiments end to end, in a tiny configuration on real Multi30k data."""
import json

from ctm_m3l.experiments import ReproduceConfig, reproduce


def test_reproduce_tiny(tmp_path, multi30k_dir):
    config = ReproduceConfig(n_train=400, n_test=60, n_components=4, num_epochs=2, pltm_iterations=10, seeds=[0],
                             topic_numbers=[3, 4], batch_sizes=[16, 32])
    results = reproduce(multi30k_dir, tmp_path, config, log=lambda *_: None)
    exp = results["experiments"]
    assert set(exp["table1"]) == {"pltm", "zeroshot", "zeroshot-kd", "m3l"}
    assert set(exp["table2"]) == {"zeroshot+mcse", "zeroshot-kd", "m3l"}  # images: aligned by MCSE, and said so
    assert 0 < exp["table1"]["m3l"][0]["metrics"]["mrr_en_de"] <= 1
    assert "uap_en_image" in exp["table2"]["m3l"][0]["metrics"]
    assert set(exp["fig5_batch"]) == {"16", "32"} and set(exp["fig3_topics"]["m3l"]) == {"3", "4"}
    tables = (tmp_path / "tables.md").read_text()
    assert "Table 1" in tables and "| m3l |" in tables and "Table 4" in tables
    for figure in ("fig3_topics", "fig4_topics", "fig5_batch", "fig6_batch"):
        assert (tmp_path / f"{figure}.png").stat().st_size > 5000
    assert json.loads((tmp_path / "results.json").read_text())["config"]["n_train"] == 400
