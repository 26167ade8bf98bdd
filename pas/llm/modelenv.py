"""Environment overrides of the model profiles: PAS_MODEL_<PROFILE>_<FIELD>, the profile upper-cased
with - and . as _ (PAS_MODEL_GEMINI_FLASH_API_BASE sets gemini-flash's api_base), validated like the YAML."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import ValidationError

from pas.base.errors import ConfigError
from pas.config.model import ModelProfile

ENV_PREFIX = "PAS_MODEL_"
"""Environment overrides: PAS_MODEL_<PROFILE>_<FIELD>, profile upper-cased with - and . as _."""


def env_key(profile: str, field_name: str) -> str:
    """PAS_MODEL_GEMINI_FLASH_API_BASE for ("gemini-flash", "api_base")."""
    norm = "".join(c if c.isalnum() else "_" for c in profile).upper()
    return f"{ENV_PREFIX}{norm}_{field_name.upper()}"


def apply_env_overrides(
    profiles: Mapping[str, ModelProfile], environ: Mapping[str, str] | None = None
) -> dict[str, ModelProfile]:
    """Return new profiles with PAS_MODEL_<PROFILE>_<FIELD> variables applied (inputs untouched).

    Values are validated like the YAML ones; an empty value sets an optional field to None.
    An invalid value raises ConfigError naming the variable.
    """
    env = os.environ if environ is None else environ
    out: dict[str, ModelProfile] = {}
    for name, prof in profiles.items():
        data = prof.model_dump()
        changed: list[str] = []
        for fname, finfo in ModelProfile.model_fields.items():
            key = env_key(name, fname)
            if key not in env:
                continue
            raw = env[key]
            data[fname] = None if raw == "" and not finfo.is_required() else raw
            changed.append(key)
        if not changed:
            out[name] = prof
            continue
        try:
            out[name] = ModelProfile.model_validate(data)
        except ValidationError as e:
            raise ConfigError(f"model profile {name!r} from {', '.join(changed)}: {e}") from None
    return out
