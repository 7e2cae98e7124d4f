"""Unit tests: id rules, SageMaker-safe names, and settings that fail loudly."""
from __future__ import annotations

import json
import re

import pytest

from chalicelib.config import Settings, load_settings
from chalicelib.domain.errors import ConfigurationError
from chalicelib.domain.names import ID_PATTERN, is_valid_id, model_name_prefix, variant_name
from esdeploy.local.environment import CHALICE_CONFIG, local_environment, stage_environment

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


@pytest.mark.parametrize("value", ["your_model_id", "abc123", "A.b-c_d", "0" * 128, "6553f1c2e4b0a1"])
def test_ids_users_send_are_accepted(value: str) -> None:
    assert is_valid_id(value)


@pytest.mark.parametrize("value", ["", "_x", "a/b", "a b", "é", "x" * 129, "a\nb", "../etc"])
def test_ids_that_cannot_be_names_are_refused(value: str) -> None:
    assert not is_valid_id(value)


@pytest.mark.parametrize("model_id", ["your_model_id", "your-model-id", "Your.Model.Id", "x" * 128, "9"])
def test_variant_names_are_valid_sagemaker_names(model_id: str) -> None:
    name = variant_name("esd", model_id, "f" * 128)
    assert SAGEMAKER_NAME.fullmatch(name), name
    assert name.startswith(model_name_prefix("esd", model_id))


def test_ids_that_sanitise_alike_get_different_names() -> None:
    names = {variant_name("esd", m, "t1") for m in ["a_b", "a-b", "a.b", "A_B"]}
    assert len(names) == 4


def test_names_are_deterministic_and_differ_per_task() -> None:
    assert variant_name("esd", "m", "t1") == variant_name("esd", "m", "t1")
    assert variant_name("esd", "m", "t1") != variant_name("esd", "m", "t2")


def test_a_model_prefix_does_not_match_a_longer_id() -> None:
    assert not variant_name("esd", "ab", "t").startswith(model_name_prefix("esd", "a"))


def test_missing_setting_is_named(test_env: dict[str, str]) -> None:
    env = dict(test_env)
    del env["ESDEPLOY_TASKS_TABLE"]
    with pytest.raises(ConfigurationError, match="ESDEPLOY_TASKS_TABLE"):
        load_settings(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ESDEPLOY_MAX_INSTANCE_COUNT", "lots"),
        ("ESDEPLOY_POLL_MAX_SECONDS", "5000"),
        ("ESDEPLOY_DEFAULT_INSTANCE_TYPE", "ml.p5.48xlarge"),
        ("ESDEPLOY_RESOURCE_PREFIX", "Has-Dash"),
        ("ESDEPLOY_TASK_RETENTION_DAYS", "-1"),
        ("ESDEPLOY_TASK_RETENTION_DAYS", "forever"),
        ("ESDEPLOY_MAX_PROMOTION_TIMEOUT_SECONDS", str(15 * 86_400)),
        ("ESDEPLOY_DEFAULT_PROMOTION_TIMEOUT_SECONDS", "30"),
        ("ESDEPLOY_BAKE_CHECK_SECONDS", "0"),
        ("ESDEPLOY_BAKE_CHECK_SECONDS", "901"),
        ("ESDEPLOY_ROLLBACK_MAX_5XX_ERRORS_PER_MINUTE", "-1"),
        ("ESDEPLOY_ROLLBACK_MAX_MODEL_LATENCY_MS", "0"),
        ("ESDEPLOY_ROLLBACK_MAX_MODEL_LATENCY_MS", "600001"),
    ],
)
def test_malformed_setting_is_named(test_env: dict[str, str], name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings({**test_env, name: value})


def test_every_bad_setting_is_named_at_once(test_env: dict[str, str]) -> None:
    """A broken stage shows everything to fix in one deploy, not one variable per attempt."""
    env = {**test_env, "ESDEPLOY_MAX_INSTANCE_COUNT": "lots", "ESDEPLOY_POLL_MAX_SECONDS": "5000"}
    del env["ESDEPLOY_SAGEMAKER_ROLE_ARN"]
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert message.startswith("3 settings are wrong: ")
    assert "setting ESDEPLOY_MAX_INSTANCE_COUNT='lots' is not an integer" in message
    assert "setting ESDEPLOY_POLL_MAX_SECONDS=5000 must be between 0 and 900" in message
    assert "setting ESDEPLOY_SAGEMAKER_ROLE_ARN is missing: set it in .chalice/config.json" in message


def test_a_setting_checked_against_another_is_named_with_it(test_env: dict[str, str]) -> None:
    env = {**test_env, "ESDEPLOY_POLL_INITIAL_SECONDS": "60", "ESDEPLOY_POLL_MAX_SECONDS": "30",
           "ESDEPLOY_MAX_BAKE_SECONDS": "100", "ESDEPLOY_DEFAULT_BAKE_SECONDS": "200"}
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env)
    assert str(caught.value) == (
        "2 settings are wrong: "
        "setting ESDEPLOY_DEFAULT_BAKE_SECONDS='200' must be between 0 and 100 (ESDEPLOY_MAX_BAKE_SECONDS); "
        "setting ESDEPLOY_POLL_MAX_SECONDS='30' must not be below ESDEPLOY_POLL_INITIAL_SECONDS (60)"
    )


def test_a_blank_setting_is_an_unset_one(test_env: dict[str, str]) -> None:
    settings = load_settings({**test_env, "ESDEPLOY_MAX_INSTANCE_COUNT": "  ", "ESDEPLOY_DEFAULT_IMAGE_URI": ""})
    assert (settings.max_instance_count, settings.default_image_uri) == (4, None)
    with pytest.raises(ConfigurationError, match="setting ESDEPLOY_TASKS_TABLE is missing"):
        load_settings({**test_env, "ESDEPLOY_TASKS_TABLE": " "})


def test_settings_read_only_the_environment_they_are_given(
    test_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_settings(env) is what the local stack and the tests rely on: the process's own
    variables must not fill in what `env` leaves out."""
    monkeypatch.setenv("ESDEPLOY_TASKS_TABLE", "the-process-table")
    monkeypatch.setenv("ESDEPLOY_MAX_INSTANCE_COUNT", "7")
    env = {k: v for k, v in test_env.items() if k != "ESDEPLOY_TASKS_TABLE"}
    with pytest.raises(ConfigurationError, match="ESDEPLOY_TASKS_TABLE is missing"):
        load_settings(env)
    assert load_settings(test_env).max_instance_count == 4


def test_the_packager_accepts_exactly_the_ids_the_api_accepts() -> None:
    # esdeploy/manifest.py reads the API's rule (chalicelib.domain.names), no copy of its own.
    from esdeploy import manifest

    ids = ["m1", "all-MiniLM-L6-v2.v1_0", "x" * 128, "x" * 129, "", "-x", ".x", "a/b", "a b", "a\n", "é", "A_b-c.d"]
    for model_id in ids:
        try:
            manifest.validate_model_id(model_id)
            accepted = True
        except manifest.ManifestError:
            accepted = False
        assert accepted is bool(ID_PATTERN.fullmatch(model_id)), model_id


# infra/finalize.py pins the template's parameters from these, so every stage states them.
READ_BY_INFRA = {"ESDEPLOY_STAGE", "ESDEPLOY_RESOURCE_PREFIX", "ESDEPLOY_ARTIFACT_PREFIX", "ESDEPLOY_SSM_PREFIX"}
# app.py reads this one at import, for Chalice's authorizer; it is no field of Settings.
READ_BY_APP = {"ESDEPLOY_API_AUTH"}


def settings_without(env: dict[str, str], name: str) -> Settings | None:
    try:
        return load_settings({k: v for k, v in env.items() if k != name})
    except ConfigurationError:
        return None  # required: nothing to fall back on


@pytest.mark.parametrize("stage", sorted(json.loads(CHALICE_CONFIG.read_text())["stages"]))
def test_every_stage_loads_and_states_no_default_again(stage: str) -> None:
    env = stage_environment(stage)
    settings = load_settings(env)
    assert settings.stage == stage
    restated = [
        name for name in env
        if name.startswith("ESDEPLOY_") and name not in READ_BY_INFRA | READ_BY_APP
        and settings_without(env, name) == settings
    ]
    assert restated == [], f"config.py already has these defaults: {restated}"


def test_the_local_stack_runs_the_local_stage_of_the_chalice_config() -> None:
    env = local_environment("http://127.0.0.1:5000")
    assert {k: env[k] for k in stage_environment("local")} == stage_environment("local")
    assert (env["AWS_ENDPOINT_URL"], load_settings(env).stage) == ("http://127.0.0.1:5000", "local")


def test_the_stall_window_outlasts_the_longest_poll(test_env: dict[str, str]) -> None:
    settings = load_settings({**test_env, "ESDEPLOY_POLL_MAX_SECONDS": "300"})
    assert settings.stall_seconds == 720
    assert max(settings.poll_delay(polls) for polls in range(1, 40)) == 300 < settings.stall_seconds
    assert [settings.poll_delay(polls) for polls in (1, 2, 3)] == [30, 45, 67]


def test_a_default_promotion_window_over_the_max_is_named(test_env: dict[str, str]) -> None:
    env = {**test_env, "ESDEPLOY_MAX_PROMOTION_TIMEOUT_SECONDS": "3600"}
    assert load_settings(env).default_promotion_timeout_seconds == 3600  # the 24 h default shrinks to the max
    with pytest.raises(ConfigurationError, match="ESDEPLOY_DEFAULT_PROMOTION_TIMEOUT_SECONDS"):
        load_settings({**env, "ESDEPLOY_DEFAULT_PROMOTION_TIMEOUT_SECONDS": "7200"})


def test_a_bad_max_promotion_window_is_the_only_error_it_causes(test_env: dict[str, str]) -> None:
    """The default window is computed from the max: with the max broken, only the max is named."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings({**test_env, "ESDEPLOY_MAX_PROMOTION_TIMEOUT_SECONDS": "30"})
    assert str(caught.value) == "setting ESDEPLOY_MAX_PROMOTION_TIMEOUT_SECONDS=30 must be between 60 and 1209600"
