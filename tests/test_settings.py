"""Settings: sources, precedence, one-line errors, and the example file documenting every setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from config import Settings, SettingsError, load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "pivotal.example.toml"


def test_defaults_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing configured the daemon still has a complete, valid configuration."""
    monkeypatch.delenv("PIVOTAL_DATABASE_URL", raising=False)
    settings = load_settings()
    assert settings.server.port == 8080
    assert settings.database.url is None


def test_precedence_flags_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flags beat environment, environment beats the TOML file, the file beats defaults."""
    config = tmp_path / "p.toml"
    config.write_text('[server]\nport = 1111\nhost = "0.0.0.0"\n[database]\npool_max = 33\n')
    monkeypatch.setenv("PIVOTAL_SERVER__PORT", "2222")
    monkeypatch.setenv("PIVOTAL_DATABASE_URL", "postgresql://u@h/db")
    settings = load_settings(config)
    assert (settings.server.port, settings.server.host, settings.database.pool_max) == (2222, "0.0.0.0", 33)
    assert settings.database.url is not None
    assert settings.database.url.get_secret_value() == "postgresql://u@h/db"
    assert load_settings(config, server={"port": 3333}).server.port == 3333


@pytest.mark.parametrize(
    ("env", "toml", "message"),
    [
        ({"PIVOTAL_SERVER__PORT": "eighty"}, "", "invalid setting server.port: Input should be a valid integer"),
        ({"PIVOTAL_SERVER__PORT": "70000"}, "", "invalid setting server.port: Input should be less than or equal"),
        ({"PIVOTAL_DATABASE_URL": "mysql://x"}, "", "invalid setting database.url: Value error, must start with"),
        ({"PIVOTAL_AUTH__JWT_SECRET": "short"}, "", "invalid setting auth.jwt_secret: Value error, must be at least"),
        ({"PIVOTAL_LOGGING__LEVEL": "loud"}, "", "invalid setting logging.level: Input should be"),
        ({"PIVOTAL_SERVR__PORT": "1"}, "", "invalid setting PIVOTAL_SERVR__PORT: unknown setting"),
        ({}, "[server]\nprot = 1\n", "invalid setting server.prot: unknown setting"),
        ({}, "[database]\npool_min = 9\npool_max = 3\n", "invalid setting database: Value error, pool_min (9)"),
        ({}, "[server\n", "config file"),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_setting(
    env: dict[str, str], toml: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad value raises SettingsError whose single line names the setting and the problem."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = None
    if toml:
        config = tmp_path / "bad.toml"
        config.write_text(toml)
    with pytest.raises(SettingsError) as caught:
        load_settings(config)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_missing_config_file(tmp_path: Path) -> None:
    """A --config that does not exist is an error, not silently ignored."""
    with pytest.raises(SettingsError, match="no such file"):
        load_settings(tmp_path / "nope.toml")


def _leaves(model: type[BaseModel], prefix: str = "") -> list[str]:
    names = []
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            names += _leaves(info.annotation, f"{name}.")
        else:
            names.append(prefix + name)
    return names


def test_example_file_documents_every_setting_and_loads() -> None:
    """config/pivotal.example.toml names every setting (commented or not) and is itself valid."""
    text = EXAMPLE.read_text()
    section = ""
    seen = set()
    for raw in text.splitlines():
        line = raw.lstrip("# ").strip()
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]") + "."
        elif "=" in line and not raw.startswith("##"):
            seen.add(section + line.split("=")[0].strip())
    missing = set(_leaves(Settings)) - seen
    assert not missing, f"undocumented settings: {sorted(missing)}"
    load_settings(EXAMPLE)
