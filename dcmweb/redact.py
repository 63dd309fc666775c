"""Keep secrets out of everything dcmweb shows: userinfo in URLs and the credentials it
sends become ``***``, and so do the values of a query's patient keys (PatientName=***,
AccessionNumber=***) and credential fields (access_token=***, key=***), and in a warning
about a filter every value that may identify someone.

A HOST such as ``http://alice:PW@host/dicom-web`` works (the userinfo becomes basic
authentication), but the URL is what error messages, ``-v`` logs, reports and tracebacks
print. A server or proxy may also quote the credentials it was sent in its error body,
which dcmweb shows. Every message passes through :func:`redact_text`; server text that
is shortened passes through :func:`shorten`, which redacts before it cuts.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import unquote_plus

# scheme://userinfo@ : the userinfo is everything up to the LAST '@' of the URL, since a
# password pasted without percent-encoding may hold '/', '?', '#' and '@' (a query value
# with an '@' in it is hidden too: the safe side). A URL ends at a space or a quote.
# Letters spelled in both cases: with (?i) the pattern takes 0.5 ms to compile, not 0.1.
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s'\"<>`]*@")
HIDDEN = "***"
MIN_SECRET = 6  # a shorter value would be found inside ordinary words and hidden there
# A secret's beginning this long, left at the end of a cut text, is hidden too.
MIN_SECRET_PREFIX = 3
# -H header names that say their value is a credential (Authorization, X-Api-Key,
# Cookie, X-Goog-IAP-JWT-Assertion, X-Amz-Signature, X-Sig, ...): one list for what
# messages hide and what ``config show`` hides.
CREDENTIAL_NAME = re.compile(
    r"(?i)auth|token|key|secret|passw|cookie|session|signature|sig(?![a-z])|jwt|assertion"
    r"|credential|bearer")
# A JSON Web Token (header.payload.signature, the header's base64 starting '{"'): a
# credential whatever the header that carries it is called.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.")
# Query keys whose values name or identify a patient, by keyword or tag (also as a step of
# an attribute path: OtherPatientIDsSequence.PatientID): a -v log or a message shows the
# request's shape, not who it looked for.
_PATIENT_KEYS = frozenset(key.lower() for key in (
    "PatientName", "00100010", "PatientID", "00100020", "PatientBirthDate", "00100030",
    "PatientBirthTime", "00100032", "OtherPatientIDs", "00101000", "OtherPatientNames",
    "00101001", "PatientBirthName", "00101005", "PatientMotherBirthName", "00101060",
    "PatientAddress", "00101040", "PatientTelephoneNumbers", "00102154",
    "MedicalRecordLocator", "00102180", "AccessionNumber", "00080050"))
# Besides: every key of the patient group (0010,xxxx) or whose keyword names the patient
# (PatientAge, PatientSex, PatientWeight, IssuerOfPatientID, ...).
_PATIENT_GROUP = re.compile(r"0010[0-9a-f]{4}|.*patient.*")
# The attributes whose filter values a warning may show: not about the patient, and the
# UIDs dcmweb names in paths and reports anyway. Any other value (a description, a date,
# a number the site gives) may identify someone: a warning shows the key alone.
_SHOWN_FILTER_TAGS = frozenset({
    "00080060", "00080061", "00200013", "00200011", "00080016", "00080018", "0020000D",
    "0020000E"})  # Modality(ies in study), Instance/Series Number, SOP Class and the UIDs
# Replaced whole (never changed in place): a thread may be reading it meanwhile.
_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()


def hide(secret: str) -> None:
    """Never show ``secret`` (a token, a password, a credential header's value)."""
    global _secrets
    secret = secret.strip()
    if len(secret) >= MIN_SECRET and secret not in _secrets:
        with _secrets_lock:
            if secret not in _secrets:
                _secrets = (*_secrets, secret)


def is_credential_header(name: str, value: str) -> bool:
    """Whether a header's value is a credential: by its name, or a JWT whatever its name."""
    return bool(CREDENTIAL_NAME.search(name) or _JWT.search(value))


# A query field (after '?', '&' or ';'), wherever it is in a URL.
_FIELD = re.compile(r"(?<=[?&;])[^?&;=#]*=[^&;#]*")
# What follows the '@' that ends a URL's userinfo: a host name or [IPv6] literal, an
# optional port, then the path, query or fragment (or the end). An '@' inside a query
# value (`AccessionNumber=a@b&...`) is not followed by that.
_HOST_AFTER = re.compile(r"@(?:[\w.~%-]+|\[[0-9A-Fa-f:.]+\])(?::\d*)?(?=[/?#]|$)")


def redact_url(url: str) -> str:
    """The URL with the value of each patient key and credential field in its query
    (see :func:`hide_query_credentials`), and any user name and password (everything
    before the last '@' that a host follows: a password with an unencoded '#', '?', '/'
    or '@' too; a URL typed without its scheme too), replaced by ``***``."""
    url = hide_query_credentials(_FIELD.sub(lambda field: hide_patient_value(field.group()),
                                            url))
    ends = [match.start() for match in _HOST_AFTER.finditer(url)]
    if not ends:
        return url
    scheme, sep, _ = url.partition("://")
    if not sep or len(scheme) > ends[-1]:  # no scheme before the userinfo
        scheme, sep = "", ""
    return f"{scheme}{sep}{HIDDEN}{url[ends[-1]:]}"


def hide_query_credentials(url: str) -> str:
    """``url`` with the value of each query field named like a credential
    (``access_token=``, ``key=``, ``X-Amz-Signature=``) replaced by ``***``."""
    def hidden(field: re.Match[str]) -> str:
        name, _, value = field.group().partition("=")
        return f"{name}={HIDDEN}" if value and CREDENTIAL_NAME.search(unquote_plus(name)) \
            else field.group()

    return _FIELD.sub(hidden, url)


def hide_patient_value(field: str) -> str:
    """``key=value`` with the value hidden when the key (or a step of its path) is a
    patient key."""
    name, equals, value = field.partition("=")
    steps = unquote_plus(name).lower().split(".")
    if value and any(step in _PATIENT_KEYS or _PATIENT_GROUP.fullmatch(step)
                     for step in steps):
        return f"{name}{equals}{HIDDEN}"
    return field


def shown_filter(key: str, tag: str, value: str) -> str:
    """``key=value`` for a message about a filter, the value hidden unless the attribute
    (``tag``, 8 hex digits in upper case) is one known to identify no one."""
    return f"{key}={value if tag in _SHOWN_FILTER_TAGS else HIDDEN}"


def without_userinfo(url: str) -> str:
    """``url`` with no user name and password: a URL built from HOST that a result or a
    report carries (the credentials travel as a header, never in the URL)."""
    scheme, sep, rest = url.partition("://")
    authority_end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    if not sep or "@" not in rest[:authority_end]:
        return url
    return f"{scheme}://{rest[:authority_end].rpartition('@')[2]}{rest[authority_end:]}"


def redact_text(text: str) -> str:
    """Any text (an exception message, a log line) with URL userinfo and every secret
    given to :func:`hide` hidden."""
    if "@" in text:
        text = _USERINFO.sub(rf"\1{HIDDEN}@", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, HIDDEN)
    return text


def shorten(text: str, limit: int) -> str:
    """At most ``limit`` characters of server text, redacted before the cut (a cut secret
    would no longer be found whole); a secret's beginning that ends the text (cut
    earlier, when it was read) is hidden as well."""
    text = redact_text(text)[:limit]
    for secret in _secrets:
        for length in range(min(len(secret) - 1, len(text)), MIN_SECRET_PREFIX - 1, -1):
            if text.endswith(secret[:length]):
                return text[:-length] + HIDDEN
    return text
