import os

import pytest

from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import (
    Config,
    from_dict,
    from_flat,
    load_yaml,
    parse_override,
    preset_names,
    save_yaml,
    validate,
)
from ray_a3c.common.settings.config_reference import reference_rows, reference_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def test_override_types_are_parsed_and_checked():
    cfg = from_flat(
        dict(
            [
                parse_override("algo.gamma=0.9"),
                parse_override("model.hidden_sizes=[32, 8]"),
                parse_override("run.time_limit_s=null"),
                parse_override("run.num_workers=3"),
            ]
        ),
        Config(),
    )
    assert cfg.algo.gamma == 0.9 and cfg.model.hidden_sizes == [32, 8] and cfg.run.num_workers == 3
    assert cfg.run.time_limit_s is None
    with pytest.raises(A3CError, match="run.num_workers must be int"):
        from_flat({"run.num_workers": "many"}, Config())
    with pytest.raises(A3CError, match="unknown config key 'algo.nope'"):
        from_flat({"algo.nope": 1}, Config())
    with pytest.raises(A3CError, match="section.key=value"):
        parse_override("gamma")


def test_validation_rejects_bad_values():
    for key, value, message in [
        ("algo.learning_rate", -1e-3, "learning_rate"),
        ("algo.gamma", 1.5, "gamma"),
        ("run.num_workers", -1, "num_workers"),
        ("learner.device", "tpu", "learner.device"),
        ("model.activation", "sigmoid", "activation"),
        ("algo.value_loss", "huber", "value_loss"),
        ("algo.optimizer", "sgd", "optimizer"),
        ("algo.rmsprop_alpha", 1.0, "rmsprop_alpha"),
    ]:
        with pytest.raises(A3CError, match=message):
            validate(from_flat({key: value}, Config()))
    with pytest.raises(A3CError, match="shared_trunk"):
        validate(from_flat({"algo.critic_learning_rate": 1e-3, "model.shared_trunk": True}, Config()))
    awr = {"env.dataset": "data.npz", "algo.offline_update": "awr", "algo.normalize_advantages": True}
    with pytest.raises(A3CError, match="normalize_advantages does not apply"):
        validate(from_flat(awr, Config()))


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


def test_config_md_documents_every_key():
    with open(os.path.join(ROOT, "docs", "config.md")) as fh:
        header, _, documented = fh.read().partition("\n\n")
    assert "make docs" in header and "\n" not in header, "docs/config.md: one header line, then the table"
    missing = [key for key, _, _ in reference_rows() if f"`{key}`" not in documented]
    assert not missing, f"docs/config.md lacks {missing}"
    assert documented == reference_table(), "docs/config.md is stale: run `make docs`"
    for row in documented.splitlines()[2:]:  # an unescaped | in a doc would split its cell
        assert row.replace("\\|", "").count("|") == 4, row


def test_join_address_prefers_the_config_then_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cluster = Config().cluster
    assert cluster.join_address() is None  # a local Ray
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # what a Ray job's driver finds
    assert cluster.join_address() == "10.0.0.1:6379"
    cluster.address = "auto"
    assert cluster.join_address() == "auto"


def test_local_size_check_is_skipped_when_joining(monkeypatch):
    import ray

    from ray_a3c.cluster.run.launch import check_local_size

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # the test session's shared Ray would skip it too
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = Config()
    cfg.run.num_workers = 10_000
    with pytest.raises(A3CError, match="workers need"):
        check_local_size(cfg)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    check_local_size(cfg)  # a cluster's size is its own: nothing to refuse here


# Found by the fuzz suite (tests/unit/test_fuzz_inputs.py): each was a traceback, or a run that failed after Ray
# started.
@pytest.mark.parametrize(
    "override, needle",
    [
        ("algo.adam_eps=\x1b", "not valid YAML (special characters are not allowed)"),  # was AttributeError
        ("env.kwargs={1: 2}", "env.kwargs keys must be keyword names (strings), got [1]"),  # was TypeError
        ("env.frame_stack=1000000000", "env.frame_stack must be <= 256"),  # was the process killed for memory
        ("run.seed=-1", "run.seed must be in [0, 2**63)"),  # was an error in every worker once Ray had started
        ("run.seed=100000000000000000000000", "run.seed must be in [0, 2**63)"),  # and in the PS's torch seed
    ],
)
def test_overrides_the_fuzzing_broke_are_refused_with_one_message(override, needle):
    with pytest.raises(A3CError) as info:
        validate(from_flat(dict([parse_override(override)]), Config()))
    assert needle in str(info.value)


def test_the_cli_prints_one_error_line_whatever_the_input_holds(capsys):
    from ray_a3c.cluster.cli import main

    # \x1e is a line break to str.splitlines(); the override is quoted as its repr
    assert main(["config", "--set", "\x1e"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["error: override '\\x1e' must look like section.key=value"]
