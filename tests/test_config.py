import os

import pytest

from ray_a3c.common.config import (
    Config,
    from_dict,
    from_flat,
    load_yaml,
    parse_override,
    preset_names,
    reference_rows,
    save_yaml,
    validate,
)
from ray_a3c.common.errors import A3CError

ROOT = os.path.dirname(os.path.dirname(__file__))


def test_override_types_are_parsed_and_checked():
    cfg = from_flat(dict([parse_override("algo.gamma=0.9"), parse_override("model.hidden_sizes=[32, 8]"),
                          parse_override("run.time_limit_s=null"), parse_override("run.num_workers=3")]), Config())
    assert cfg.algo.gamma == 0.9 and cfg.model.hidden_sizes == [32, 8] and cfg.run.num_workers == 3
    assert cfg.run.time_limit_s is None
    with pytest.raises(A3CError, match="run.num_workers must be int"):
        from_flat({"run.num_workers": "many"}, Config())
    with pytest.raises(A3CError, match="unknown config key 'algo.nope'"):
        from_flat({"algo.nope": 1}, Config())
    with pytest.raises(A3CError, match="section.key=value"):
        parse_override("gamma")


def test_validation_rejects_bad_values():
    for key, value, message in [("algo.learning_rate", -1e-3, "learning_rate"), ("algo.gamma", 1.5, "gamma"),
                                ("run.num_workers", -1, "num_workers"), ("learner.device", "tpu", "learner.device"),
                                ("model.activation", "sigmoid", "activation"),
                                ("algo.value_loss", "huber", "value_loss")]:
        with pytest.raises(A3CError, match=message):
            validate(from_flat({key: value}, Config()))
    with pytest.raises(A3CError, match="shared_trunk"):
        validate(from_flat({"algo.critic_learning_rate": 1e-3, "model.shared_trunk": True}, Config()))


def test_yaml_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(A3CError, match="mapping"):
        load_yaml(str(path))
    with pytest.raises(A3CError, match="unknown section"):
        from_dict({"envs": {}})


@pytest.mark.parametrize("name", ["cartpole", "acrobot", "lunarlander", "pendulum"])
def test_presets_ship_and_validate(name):
    assert name in preset_names()
    validate(from_dict(load_yaml(name)))


def test_saved_config_reloads_identically(tmp_path):
    cfg = validate(from_dict(load_yaml("pendulum")))
    save_yaml(cfg, str(tmp_path / "config.yaml"))
    assert from_dict(load_yaml(str(tmp_path / "config.yaml"))) == cfg


def test_readme_documents_every_key():
    with open(os.path.join(ROOT, "README.md")) as fh:
        readme = fh.read()
    missing = [key for key, _, _ in reference_rows() if f"`{key}`" not in readme]
    assert not missing, f"README config reference lacks {missing}"
