"""Where a setting's text comes from: its variable, or, for a secret, the file `NAME_FILE` names.

Both are cleaned the same way before any parser sees them. A variable's value is stripped; a secret file
loses ALL its trailing whitespace (editors and `echo` add one newline, `kubectl create secret
--from-file` of a heredoc two, and a Windows editor a CR): a token with a stray newline would otherwise
reach an HTTP header and fail every request at the far end, blamed on the wrong party. Whatever remains
must hold no control character: those are never part of a token, a key or a URL, so startup stops naming
the variable (never echoing the value) instead of crash-looping later.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from pathlib import Path

from service.errors import ConfigError


def setting_text(env: Mapping[str, str], name: str, *, from_file: bool) -> tuple[str, str] | None:
    """(the variable it came from, the cleaned text) of setting `name`; None when unset or blank."""
    content = _read_file(env, name) if from_file else None
    source, text = (f"{name}_FILE", content) if content is not None else (name, _read(env, name))
    if text is None:
        return None
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise ConfigError(source, "malformed: contains a control character (a line break, a tab, ...)")
    return source, text


def _read(env: Mapping[str, str], name: str) -> str | None:
    """The stripped value of `name`; blank counts as unset (the default applies)."""
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _read_file(env: Mapping[str, str], name: str) -> str | None:
    """The content of the file `{name}_FILE` names, without trailing whitespace; None when unset."""
    file_variable = f"{name}_FILE"
    path = _read(env, file_variable)
    if path is None:
        return None
    if _read(env, name) is not None:
        raise ConfigError(name, f"ambiguous: both {name} and {file_variable} are set; keep one")
    try:
        content = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        # The reason (e.g. "No such file or directory"), never the content.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(file_variable, f"unreadable: {reason}") from None
    content = content.rstrip()
    if content.strip() == "":
        raise ConfigError(file_variable, "empty: the file holds no secret")
    return content
