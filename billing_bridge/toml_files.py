"""What the bridge's TOML configuration loaders share (collection rule sets, installment plan terms): a bundled file
by id or a file by path, and validation into a pydantic model with one-line errors naming the file and key."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from amiflow.errors import ConfigError

__all__ = ["read_bundled_or_file", "validate_toml"]

M = TypeVar("M", bound=BaseModel)


def read_bundled_or_file(name_or_path: str | Path, package: str, folder: str, what: str) -> tuple[str, str] | None:
    """(text, where) of ``name_or_path``: a ``.toml`` or existing path, else the bundled ``folder/NAME.toml`` of
    ``package``; None when no such bundled file exists (the caller says what is bundled). A missing path is a
    ConfigError naming ``what``."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except FileNotFoundError:
            raise ConfigError(f"{what} file {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{what} file {path}: cannot read ({exc})") from None
    res = resources.files(package) / folder / f"{name_or_path}.toml"
    if not res.is_file():
        return None
    return res.read_text(encoding="utf-8"), f"{folder}/{name_or_path}.toml"


def validate_toml(model: type[M], text: str, where: str) -> M:
    """``text`` parsed as TOML and validated as ``model``; ConfigError names ``where`` and the first bad key."""
    try:
        return model.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{where}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
