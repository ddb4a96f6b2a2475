"""One place that hides credentials wherever settings are shown or logged.

Settings reach people through ``GetConfig`` (``maos config get``), ``maos config set``,
``maos db``, health messages and log lines. Each of them passes values through
:func:`shown_setting` (a setting by key) or :func:`redact` (free text), which hide:

* every setting whose name looks secret (``claude.api_key``, anything ending in ``token``,
  ``secret``, ``password`` ...): shown as ``(set)`` or empty;
* the password of a URL's user information (``postgresql://user:***@host/db``);
* query parameters of a URL that carry credentials (``?password=``, ``sslpassword``, ``token``,
  ``key``, ``secret`` ...), and libpq-style ``password=...`` pairs in connection strings.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

#: What a hidden value is replaced with.
MASK = "***"
#: What a secret setting that has a value is shown as.
SET = "(set)"

# A setting's last dotted segment that names a secret (``key_file`` and other paths are not secrets).
_SECRET_SETTING = re.compile(
    r"(?:^|_)(?:api_?key|key|secret|secrets|token|tokens|password|passwd|passphrase|pwd|credentials?"
    r"|private_key|access_key|signing_key)$",
    re.IGNORECASE,
)
# A query parameter or connection-string field that carries a credential.
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|credential|signature|sig$|session", re.IGNORECASE)
# A URL with a scheme (``postgresql+psycopg://...``, ``redis://...``, ``https://...``).
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
# ``password=...`` style pairs outside URLs (libpq connection strings, log lines).
_PAIR = re.compile(
    r"(?P<name>\b[A-Za-z_]*(?:password|passwd|pwd|secret|token|api_?key))(?![A-Za-z])(?P<sep>\s*=\s*)"
    r"(?P<quote>['\"]?)(?P<value>[^\s'\"&,;]+)(?P=quote)",
    re.IGNORECASE,
)


def is_secret_setting(key: str) -> bool:
    """Whether the setting ``key`` (dotted) holds a secret that is never shown."""
    leaf = key.rsplit(".", 1)[-1].replace("-", "_")
    return bool(_SECRET_SETTING.search(leaf))


def redact_url(url: str) -> str:
    """``url`` with the password of its user information and its credential parameters masked.

    Text that is not one URL with a scheme (a plugin backend's connection string, a
    message) is passed through :func:`redact` instead.
    """
    if not _URL.fullmatch(url):
        return redact(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc, query = parts.netloc, parts.query
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if colon else f"{user}@{hostport}"
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(name) for name, _ in pairs):
            query = "&".join(
                f"{name}={MASK if _SECRET_PARAM.search(name) else value}" for name, value in pairs
            )
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_pairs(text: str) -> str:
    return _PAIR.sub(lambda m: f"{m['name']}{m['sep']}{m['quote']}{MASK}{m['quote']}", text)


def redact(text: str) -> str:
    """Free text (a log line, an error message) with every credential in it masked."""
    if not text:
        return text
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    return _redact_pairs(text)


def shown_setting(key: str, value: Any) -> str:
    """How the value of setting ``key`` is shown: secrets as ``(set)``, URLs without credentials."""
    if is_secret_setting(key):
        return SET if value not in (None, "", {}, []) else ""
    return redact(str(value))


class RedactingFilter(logging.Filter):
    """A logging filter that masks credentials in each record's message (arguments included).

    Installed on the control plane's log handlers, so a URL or key that reaches a log line
    (an exception's text, a plugin's message) is written without its secret.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with credentials masked; never drops a record."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
