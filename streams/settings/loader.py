"""Loading one environment's YAML file: ``${VAR}`` interpolation, ``--set`` overrides, errors.

Values may use ``${VAR}`` and ``${VAR:-default}``; a missing variable without a default is
an error naming the variable and the key that needs it. Any variable may instead be read
from a file named by ``VAR_FILE`` (Kubernetes secret mounts; see :func:`lookup`). Every problem is one
:class:`ConfigError` naming the file and the dotted key, never the offending value; secrets
are rendered as ``**********`` by :func:`redacted`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from schemas.errors import describe_validation_error as describe
from streams.settings.models import ENVIRONMENTS, Settings


class ConfigError(Exception):
    """Raised for any configuration problem; the message names the file and the key."""


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


FILE_SUFFIX = "_FILE"


def lookup(name: str, env: Mapping[str, str], path: str = "") -> str | None:
    """The value of ``${name}``: ``env[name]``, or the content of the file ``env[name_FILE]``.

    The convention of the official postgres/mysql images, for secrets mounted as files
    (Kubernetes, Docker secrets): ``MONGODB_URI_FILE=/run/secrets/mongodb-uri`` stands for
    ``MONGODB_URI`` set to that file's content with one trailing newline (``\\n`` or
    ``\\r\\n``) removed; everything else in the file, spaces, ``$`` and inner line breaks
    included, is kept exactly (the file is read as bytes, decoded as UTF-8, never re-read
    with newline translation).

    It applies to every variable, not to a list of secret ones. The images list their own
    few variables; these files are edited by their users, so a list here would have to
    follow every ``${...}`` added (and miss the next secret, as a list of the four obvious
    ones would have missed ``GRAPHRAG_API_TOKEN``), while for a non-secret variable
    ``VAR_FILE`` is simply never set: the general rule costs nothing and is one less thing
    to keep in sync. As everywhere in interpolation, an empty value counts
    as not set: an empty file is the same as ``VAR=""`` (the default, or null, or the
    missing-variable error), and an empty ``VAR_FILE`` is ignored.

    Errors name the key, the variable and the file's path, never its content: both
    ``VAR`` and ``VAR_FILE`` set (which one was meant is unknowable), a missing or
    unreadable file, a file that is not UTF-8. ``None`` means neither is set.
    """
    file_var = name + FILE_SUFFIX
    direct = env.get(name, "")
    file_name = env.get(file_var, "")
    if not file_name:
        return direct if direct != "" else None
    if direct != "":
        raise ConfigError(f"{path}: both {name} and {file_var} are set; set only one of them")
    try:
        data = Path(file_name).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{path}: {file_var}={file_name}: cannot read the file ({reason})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Not the decoder's message: it quotes the offending byte.
        raise ConfigError(f"{path}: {file_var}={file_name}: the file is not valid UTF-8") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    return text if text != "" else None


def interpolate(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a loaded YAML tree.

    ``env`` is the only source of values (``os.environ`` in :func:`load_settings`); a
    variable's value may come from the file its ``VAR_FILE`` names (:func:`lookup`).
    """
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = lookup(name, env, path)
        if found is not None:
            return found
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set (nor {name}{FILE_SUFFIX}) "
                          "and has no default")

    replaced = _VAR.sub(substitute, value)
    # A value that was only a variable and came out empty means "not set" (null).
    if replaced == "" and _VAR.fullmatch(value):
        return None
    return replaced


def default_config_dir() -> Path:
    """Where environment files live: $GRAPHRAG_CONFIG_DIR, ./config, the wheel's, or the checkout's.

    An installed wheel carries the top-level config/ as ``streams/config_files``; a source
    checkout (editable install) has it beside the package.
    """
    if os.environ.get("GRAPHRAG_CONFIG_DIR"):
        return Path(os.environ["GRAPHRAG_CONFIG_DIR"])
    cwd = Path.cwd() / "config"
    if (cwd / "development.yaml").exists():
        return cwd
    streams_package = Path(__file__).resolve().parents[1]
    packaged = streams_package / "config_files"
    if (packaged / "development.yaml").exists():
        return packaged
    return streams_package.parent / "config"


def config_path(path: str | os.PathLike[str] | None = None, environment: str | None = None) -> Path:
    if path:
        return Path(path)
    if os.environ.get("GRAPHRAG_CONFIG"):
        return Path(os.environ["GRAPHRAG_CONFIG"])
    env = environment or os.environ.get("GRAPHRAG_ENV") or "development"
    if env not in ENVIRONMENTS:
        raise ConfigError(f"GRAPHRAG_ENV={env!r} is not one of {', '.join(ENVIRONMENTS)}")
    return default_config_dir() / f"{env}.yaml"


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    environment: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
) -> Settings:
    """Load, interpolate and validate one environment's configuration file.

    ``overrides`` are ``dotted.key=value`` pairs (values read as YAML) applied after
    interpolation and validated with the rest (`--set`, and a re-index's options).
    """
    file = config_path(path, environment)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {file}") from None
    except yaml.YAMLError as exc:
        # Only the position and the kind of problem: the YAML error text quotes the line,
        # which may hold a secret.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{file}: not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of sections")
    try:
        data = interpolate(raw, os.environ if env is None else env)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    for item in overrides:
        apply_override(data, item)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{file}: {describe_validation_error(exc)}") from None


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in nested config data (the value parsed as YAML: 8, true, [en])."""
    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in parts):
        raise ConfigError(f"--set {item.split('=', 1)[0]!r}: expected dotted.key=value, e.g. "
                          "graphrag.extraction.extractor=offline")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: the value is not valid YAML") from None
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[:i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def describe_validation_error(exc: ValidationError) -> str:
    """One clause per problem, naming the dotted key; never echoes the offending value."""
    return describe(exc, noun="key", top="(top level)")


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, secrets masked, for `config show`."""
    return settings.model_dump(mode="json")
