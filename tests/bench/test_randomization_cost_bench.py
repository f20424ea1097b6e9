"""``robots-ts bench randomization-cost --families``: each family's variant turns exactly that
family off, and the bench reports every family the preset uses."""
import json

from robots_ts.bench.randomization_cost import FAMILIES, family_off, main
from robots_ts.config import EnvConfig, RandomizationConfig, load_config

PRESET = "configs/randomization/default.yaml"


def test_a_family_off_resets_its_own_fields_only():
    cfg = load_config(EnvConfig, None, [f"randomization=@{PRESET}"])
    nominal = RandomizationConfig()
    covered = set()
    for family, fields in FAMILIES.items():
        off = family_off(cfg, family).randomization
        for f in RandomizationConfig.__dataclass_fields__:
            want = getattr(nominal, f) if f in fields else getattr(cfg.randomization, f)
            assert getattr(off, f) == want, (family, f)
        covered |= set(fields)
    # Every randomizer belongs to a family (ADR chooses values for them, it draws none itself).
    assert covered == set(RandomizationConfig.__dataclass_fields__) - {"adr"}


def test_the_bench_reports_the_preset_and_each_family_it_uses(capsys):
    assert main(["--tasks", "Reach", "--num-envs", "2", "--blocks", "2", "--block-steps", "2", "--families"]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["task"] == "Reach" and len(rec["ratios"]) == 2 and rec["median_ratio"] > 0
    # default.yaml randomizes every family; the env renders depth, so point noise is not measured.
    families = set(FAMILIES) - {"points"}
    assert set(rec["without"]) == families and all(v > 0 for v in rec["without"].values())
    assert set(rec["median_steps_per_s"]) == {"nominal", "randomized", *(f"without_{f}" for f in families)}
