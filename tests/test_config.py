"""Validation before work, the per-layer plan, and the commands that must not import TF."""

import subprocess
import sys

import pytest

from regexp.config import validate
from regexp.errors import ConfigError
from regexp.plan import layer_plan
from tests.conftest import make_cfg


@pytest.mark.parametrize(
    "overrides, key, accepted",
    [
        (["reg=l1_activity", "reg.lam=-0.1"], "reg.lam", ">= 0"),
        (["reg=l1_activity", "reg.hidden.activity.kind=l4"], "reg.hidden.activity.kind", "l1, l2"),
        (
            ["reg=l1_activity_first", "model.depth=2", "+reg.layers.3={bias: null}"],
            "reg.layers.3",
            "1..2",
        ),
        (["model.depth=0"], "model.depth", "integer >= 1"),
        (["trainer.epochs=0"], "trainer.epochs", "integer >= 1"),
        (["trainer.batch_size=-5"], "trainer.batch_size", "integer >= 1"),
        (["reg=kl_sparsity", "reg.rho=1.5"], "reg.layers.-1.activity.rho", "(0, 1)"),
        (["reg=kl_sparsity", "reg.rho=0"], "reg.layers.-1.activity.rho", "(0, 1)"),
        (["dataset=csv", "dataset.path=/no/such/file.csv"], "dataset.path", "existing CSV"),
        (["model.width=[32,32]"], "model.width", "model.depth=5"),
        (["model.activation=rectifier"], "model.activation", "relu"),
        (["optimizer.lr=0"], "optimizer.lr", "> 0"),
        (["optimizer.name=adagrad"], "optimizer.name", "adam, adamw, sgd, rmsprop"),
        (["trainer.engine=jax"], "trainer.engine", "keras"),
        (["dataset.test_size=1.5"], "dataset.test_size", "(0, 1)"),
        (
            ["reg=l3", "reg.hidden.kernel._target_=nowhere.L3"],
            "reg.hidden.kernel._target_",
            "importable",
        ),
        (["reg=l1_activity", "reg.mode=loss"], "reg.mode", "mode=layers"),
        (["reg=loss_codes", "reg.codes=[1,3]"], "reg.codes[1]", "12 (L1+L2)"),
        # a knob no spec uses (a typo) would change nothing: refused, naming the recipe's keys
        (["reg=l1_activity", "+reg.lamm=0.1"], "reg.lamm", "a key of reg=l1_activity (codes"),
        (["reg=dropout", "+reg.droput=0.3"], "reg.droput", "dropout, hidden"),
        (["reg=none", "+reg.dropout=0.3"], "reg.dropout", "${reg.dropout}"),
    ],
)
def test_bad_values_name_the_key_and_what_is_accepted(overrides, key, accepted):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides), overrides)
    assert err.value.key == key
    assert accepted in err.value.accepted
    assert "\n" not in str(err.value)


def test_a_negative_layer_index_beyond_the_depth_is_named():
    from omegaconf import open_dict

    cfg = make_cfg("reg=kl_sparsity", "model.depth=3")
    with open_dict(cfg):
        cfg.reg.layers[-4] = {"bias": None}
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.key == "reg.layers.-4"
    assert "-3..-1" in err.value.accepted


def test_every_shipped_config_validates():
    from regexp.paths import CONF

    for f in sorted((CONF / "experiment").glob("*.yaml")):
        for reg in (None, "none"):
            overrides = [f"experiment={f.stem}"] + ([f"reg={reg}"] if reg else [])
            validate(make_cfg(*overrides))
    for f in sorted((CONF / "reg").glob("*.yaml")):
        validate(make_cfg(f"reg={f.stem}"))


def test_keras_mixed_plan_matches_source_b2():
    plans = {p.name: p for p in layer_plan(make_cfg("experiment=b2_keras_mixed"))}
    l1 = {"kind": "l1", "lam": 0.001}
    l2 = {"kind": "l2", "lam": 0.001}
    l12 = {"kind": "l1l2", "l1": 0.001, "l2": 0.0}
    expected = {
        "h1": (l1, l1), "h2": (l2, l2), "h3": (l12, l12), "h4": (l1, l12), "h5": (l12, l2),
        "out": (l12, l2),
    }  # fmt: skip
    assert {n: (p.kernel, p.bias) for n, p in plans.items()} == expected
    assert all(p.activity is None for p in plans.values())


def test_negative_index_and_lam_interpolation_reach_the_last_layer():
    plans = layer_plan(make_cfg("reg=kl_sparsity", "reg.lam=0.3", "model.depth=3"))
    assert [p.activity["kind"] for p in plans[:3]] == ["l2", "l2", "kl"]
    assert plans[2].activity == {"kind": "kl", "lam": 0.3, "rho": 0.05}
    assert plans[0].activity == {"kind": "l2", "lam": 0.01}


def test_b1_codes_expand_in_variable_order():
    plans = layer_plan(make_cfg("experiment=b1_loss_fn"))
    got = [(p.kernel and p.kernel["kind"], p.bias and p.bias["kind"]) for p in plans]
    assert got == [
        ("l1", None), ("l2", "l2"), ("l1l2", "l2"), ("l1", "l2"), (None, "l2"), (None, None),
    ]  # fmt: skip
    assert plans[2].kernel == {"kind": "l1l2", "l1": 0.001, "l2": 0.001}


def _cli(*args, check_tf=True):
    """Run the CLI in a fresh interpreter; report whether it imported TensorFlow."""
    code = (
        "import sys; from regexp.cli import main\n"
        f"try:\n    rc = main({list(args)!r})\nexcept SystemExit as e:\n    rc = e.code\n"
        "print('TF_IMPORTED' if 'tensorflow' in sys.modules else 'TF_NOT_IMPORTED')\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [["--help"], ["list"], ["run", "--help"]])
def test_help_and_list_do_not_import_tensorflow(args):
    out = _cli(*args)
    assert out.returncode == 0, out.stderr
    assert "TF_NOT_IMPORTED" in out.stdout
    assert "reg" in out.stdout


def test_list_shows_every_group_with_its_options():
    out = _cli("list").stdout
    assert "reg: " in out and "l1_activity_preact" in out and "kl_sparsity" in out
    assert "experiment: a2_iris_l1_activity b1_loss_fn" in out


def test_a_bad_value_on_the_command_line_is_one_line_exit_2_without_tensorflow(tmp_path):
    out = _cli("run", "reg=l1_activity", "reg.lam=-1", f"hydra.run.dir={tmp_path}/run")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == ["regexp: error: reg.lam=-1 is not accepted; expected a number >= 0"]
    assert "TF_NOT_IMPORTED" in out.stdout
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_checking_a_keras_target_does_not_load_tensorflow():
    target = "+reg.hidden.kernel._target_=keras.regularizers.L1"
    out = _cli("check", "reg=l1_kernel", "reg.hidden.kernel=null", target)
    assert out.returncode == 0 and "TF_NOT_IMPORTED" in out.stdout, out.stderr
    out = _cli("check", "reg=l1_kernel", "reg.hidden.kernel=null", target.replace("L1", "X.L1"))
    assert out.returncode == 2 and "expected an importable 'module.Class' path" in out.stderr


def test_the_readme_recipe_example_is_valid():
    import re
    from pathlib import Path

    from omegaconf import OmegaConf, open_dict

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```yaml\n(defaults: \[none\]\n.*?)```", readme, re.S).group(1)
    recipe = OmegaConf.create(block.replace("defaults: [none]\n", ""))
    cfg = make_cfg()
    with open_dict(cfg):
        cfg.reg = OmegaConf.merge(cfg.reg, recipe)
    plans = layer_plan(cfg)
    assert plans[0].position == "pre" and plans[0].activity == {"kind": "l1", "lam": 0.001}
    assert plans[4].activity["kind"] == "kl" and plans[3].kernel == {"kind": "l2", "lam": 0.001}


def test_keys_added_later_hash_the_same_at_their_neutral_value():
    """Sweeps written before dataset.task and dataset.subsample existed still resume."""
    from omegaconf import open_dict

    from regexp.keys import LATER
    from regexp.rundir import config_hash

    cfg = make_cfg("dataset=iris")
    older = cfg.copy()
    with open_dict(older):
        for key in LATER:
            *parents, leaf = key.split(".")
            node = older
            for p in parents:
                node = node[p]
            del node[leaf]
        del older.reg.inputs  # a section that holds only such keys goes too
    assert config_hash(cfg) == config_hash(older)
    changed = make_cfg("dataset=iris", "dataset.subsample=0.5")
    assert config_hash(changed) != config_hash(cfg)


def test_a_knob_its_specs_use_is_accepted_composed_or_resolved():
    """``reg.rho`` of kl_sparsity is used through ``${reg.rho}``; in a config already
    resolved (a run's config.yaml) its value is what a spec carries."""
    from omegaconf import OmegaConf

    for overrides in (["reg=kl_sparsity", "reg.rho=0.2"], ["reg=max_norm_dropout"]):
        cfg = make_cfg(*overrides)
        validate(cfg, overrides)
        validate(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)), overrides)
    # an experiment's own knob stays when the baseline drops its recipe
    validate(make_cfg("experiment=digits_dropout", "reg=none"), ["experiment=digits_dropout",
                                                                "reg=none"])  # fmt: skip
