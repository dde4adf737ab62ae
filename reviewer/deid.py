"""De-identification for everything that leaves the site or reaches a researcher.

Three parts, one key:

- **Pseudonyms** (``pseudonym``, ``replacement_uid``): identifiers become keyed hashes
  (HMAC-SHA256 with the site's pseudonym secret). Keyed, not plain hashes, because study UIDs,
  patient IDs and user ids are guessable or enumerable: without the secret a plain SHA-256 of
  ``1.2.840...`` or of user id 7 is reversed by trying them all. The same identifier gives the
  same key in every export and API response of a site, so rows can be grouped and joined, and
  never the identifier back.
- **Free text** (``scrub_text``): report text and descriptors lose names (of the patients and
  users the system knows, and capitalised names after titles, signature phrases and before
  credentials), dates, identifiers (UIDs, MRN/accession-like numbers), phone numbers, e-mail
  addresses, URLs and ages over 89, while the clinical vocabulary (levels such as L4-5 and
  L5-S1, measurements such as 8 mm, sequence names such as T2) stays. Pure functions: no
  database, so they are unit-tested on a corpus.
- **DICOM headers** (``deidentify_dataset``): the PS3.15 Basic Application Level
  Confidentiality Profile with the Clean Descriptors Option, as a table of attributes and
  actions (``reviewer.deid_profile``; neither pydicom nor highdicom ships one), plus catch-alls by VR
  so that an attribute the table misses does not leak: person names are emptied, dates and
  times removed, instance UIDs replaced, private tags removed. The export code takes its
  DICOM-derived fields (UIDs, series descriptions) through the same actions.

The profile and the key scheme are described in docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reviewer.deid_profile import DEID_CODES, DEID_METHOD, profile_action

SECRET_ENV = "SPINEREVIEW_EXPORT_SECRET"
KEY_HEX_DIGITS = 20  # 80 bits: collision-free at any realistic site size, short enough to read


# --- keyed pseudonyms ------------------------------------------------------------------------


def pseudonym_secret() -> bytes:
    """The site's pseudonym secret: ``settings.SPINEREVIEW_EXPORT_SECRET`` or the environment
    variable of that name; otherwise generated once into ``VAR_DIR/export_secret`` (mode 0600).

    Deliberately not derived from ``SECRET_KEY``: that key is rotated for session security, and
    rotating this one unlinks every earlier export from every later one.
    """
    from django.conf import settings

    value = getattr(settings, SECRET_ENV, None) or os.environ.get(SECRET_ENV)
    if value:
        return str(value).encode()
    var_dir = Path(getattr(settings, "VAR_DIR", Path(settings.BASE_DIR) / "var"))
    path = var_dir / "export_secret"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        # written whole under a private name, then linked into place: two processes starting at
        # once both end up with the one secret that won, never with a half-written file
        tmp = var_dir / f".export_secret.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def pseudonym(kind: str, value: object, *, secret: bytes | None = None) -> str:
    """Keyed hash of an identifier: ``pseudonym("study", uid)``, 20 hex digits. ``kind``
    separates namespaces so that a reader id and a review id never give the same key."""
    key = secret if secret is not None else pseudonym_secret()
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:KEY_HEX_DIGITS]


def replacement_uid(uid: str, *, secret: bytes | None = None) -> str:
    """PS3.15 action U: a DICOM UID (``2.25.<128-bit integer>``) keyed on ``uid``.

    Stable for a site, so a de-identified manifest, its ground truth and de-identified images
    of the same study agree on every Study/Series/SOP Instance UID."""
    key = secret if secret is not None else pseudonym_secret()
    digest = hmac.new(key, f"uid:{uid}".encode(), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


# --- free text ---------------------------------------------------------------------------------

NAME, DATE, ID, UID, PHONE, EMAIL, URL, AGE = "[NAME]", "[DATE]", "[ID]", "[UID]", "[PHONE]", "[EMAIL]", "[URL]", "90+"

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)(?![a-z])"
)
_ORD = r"(?:st|nd|rd|th)?"
_CAP = r"[A-Z](?:[a-z]|['’][A-Z])[A-Za-z'’-]*"  # Title-case word
_UPPER = r"[A-Z][A-Z'’-]+"  # ALL-CAPS word
_INITIAL = r"[A-Z]\."
_NAME_WORD = rf"(?:{_CAP}|{_UPPER}|{_INITIAL})"
_PERSON = rf"{_NAME_WORD}(?:\s+(?:{_CAP}|{_INITIAL}|{_UPPER}(?=\s*(?:,|$|\.|\n)))){{0,3}}"
_LAST_FIRST = rf"(?:{_CAP}|{_UPPER}),\s*(?:{_CAP}|{_UPPER})(?:\s+{_INITIAL})?"
_CREDENTIALS = r"(?:MD|M\.D\.|DO|D\.O\.|PhD|Ph\.D\.|FRCR|FRCPC|FRANZCR|MBBS|MBChB|RN|RT\(R\)|PA-C|NP)"

# Order matters: UIDs before dates (1.2.3.4 is not a date), phone and SSN-like numbers before
# dates (123-45-6789 is not 123/45/6789), dates before bare digit runs (20240312 is a date).
_PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("url", re.compile(r"\bhttps?://\S+", re.I), URL),
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), EMAIL),
    ("uid", re.compile(r"(?<![\w.])\d+(?:\.\d+){3,}(?!\w|\.\d)"), UID),
    (
        "phone_labelled",
        re.compile(
            r"(?i:\b(?:tel(?:ephone)?|phone|ph|mobile|cell|pager|page|fax|ext(?:ension)?|bleep)\.?\s*(?:no\.?|number|#)?"
            r"\s*[:#]?\s*)(\+?\d[\d\s().-]{2,}\d)"
        ),
        PHONE,
    ),
    (
        "phone",
        re.compile(
            r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?!\w|\.\d)"
            r"|(?<![\w.])0\d{2,4}\s\d{3,4}\s\d{3,4}(?!\w|\.\d)"
        ),
        PHONE,
    ),
    ("ssn", re.compile(r"(?<![\w.-])\d{3}-\d{2}-\d{4}(?![\w-])"), ID),
    ("date_numeric", re.compile(r"(?<![\w./-])\d{1,4}[./-]\d{1,2}[./-]\d{2,4}(?![\w/-]|\.\d)"), DATE),
    ("date_compact", re.compile(r"(?<!\d)(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?!\d)"), DATE),
    (
        "date_day_month",
        re.compile(rf"(?i:\b\d{{1,2}}{_ORD}[\s-]*(?:of\s+)?{_MONTH}\.?(?:[\s,-]*\d{{4}}|-\d{{2}}(?!\d))?)"),
        DATE,
    ),
    ("date_month_day", re.compile(rf"(?i:\b{_MONTH}\.?\s+\d{{1,2}}{_ORD}(?:,?\s+\d{{4}})?(?!\d))"), DATE),
    ("date_month_year", re.compile(rf"(?i:\b{_MONTH}\.?,?\s+\d{{4}}(?!\d))"), DATE),
    ("date_short", re.compile(r"(?i:\b(?:on|dated|from|since|until|prior\s+to)\s+)(\d{1,2}/\d{1,2})(?![\d/])"), DATE),
    (
        "id_labelled",
        re.compile(
            r"(?i:\b(?:MRN|MR\s?#|MR\s+no\.?|medical\s+record(?:\s+(?:number|no\.?|#))?|"
            r"acc(?:ession)?(?:\s*(?:number|no\.?|#))?|(?:patient|pt|study|case|record|visit|encounter|order)"
            r"\s*(?:id|number|no\.?|#)|NHS\s+(?:number|no\.?)|SSN|ID)\s*[:#=]?\s*)"
            r"((?=[A-Z0-9./-]*\d)[A-Z0-9][A-Z0-9./-]{2,})",
        ),
        ID,
    ),
    ("id_alnum", re.compile(r"\b[A-Z]{1,5}[-_]?\d{4,}[A-Z0-9-]*\b"), ID),
    ("id_digits", re.compile(r"(?<![\d.])\d{5,}(?![\d]|\.\d)"), ID),
    (
        "age",
        re.compile(
            r"(?i:\b(?:aged?|age\s*:)\s*)(9\d|1[0-4]\d)\b"
            r"|\b(9\d|1[0-4]\d)(?=\s*-?\s*(?:years?|yrs?|y\.?o\.?|y/o|yo)\b|\s?[MF]\b|(?:yo|y/o)[MF]?\b)",
        ),
        AGE,
    ),
    ("name_pn", re.compile(r"\b[A-Z][A-Za-z'’-]*\^[A-Za-z'’-]+(?:\^[A-Za-z'’-]*)*"), NAME),
    (
        "name_title",
        re.compile(
            r"\b(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Doctor|Professor|Sister|Nurse)\.?\s+"
            rf"({_LAST_FIRST}|{_PERSON})"
        ),
        NAME,
    ),
    (
        "name_signature",
        re.compile(
            r"(?i:\b(?:(?:electronically\s+)?signed(?:\s+off)?|dictated|read|reviewed|reported|transcribed|"
            r"verified|approved|interpreted|discussed\s+with|d/w|communicated\s+to|called\s+to)\s+by\s*:?\s*"
            r"|\b(?:discussed\s+with|d/w|communicated\s+to|called\s+to|results?\s+(?:given|called)\s+to)\s+"
            r"|\b(?:patient(?:'s)?\s+name|patient|name|attending|referring(?:\s+(?:physician|doctor|clinician))?|"
            r"ordering(?:\s+(?:physician|provider))?|physician|radiologist|reader|technologist|tech|cc|"
            r"requested\s+by|referred\s+by)\s*:\s*)"
            rf"(?:(?:Dr|Mr|Mrs|Ms|Prof)\.?\s+)?({_LAST_FIRST}|{_PERSON})"
        ),
        NAME,
    ),
    (
        "name_credentials",
        re.compile(rf"\b((?:{_CAP}|{_INITIAL})(?:\s+(?:{_CAP}|{_INITIAL})){{0,3}}),?\s+{_CREDENTIALS}\b"),
        NAME,
    ),
)

# Words a capitalised-name pattern may catch that are clinical, never names.
_NOT_NAMES = frozenset(w.lower() for w in (
    "MRI", "MR", "CT", "Findings", "Impression", "Comparison", "Technique", "History", "Clinical",
    "Indication", "Conclusion", "Report", "Addendum", "Sagittal", "Axial", "Coronal", "Lumbar", "Cervical",
    "Thoracic", "Spine", "Disc", "Canal", "Stenosis", "Foraminal", "Modic", "Schmorl", "Normal", "No",
    "None", "Mild", "Moderate", "Severe", "Left", "Right", "Bilateral", "STIR", "FLAIR", "Contrast",
    "Gadolinium", "The", "This", "There", "Study", "Exam", "Examination", "Radiology", "Department",
    "Hospital", "Dr", "Mr", "Mrs", "Ms", "Miss", "Mx", "Prof", "Doctor", "Professor", "Sister", "Nurse",
))  # fmt: skip


@dataclass(frozen=True)
class Scrubber:
    """``scrub_text`` with a fixed set of known names prepared once (an export scrubs many
    reports with the same names). Known names are looked up word by word in sets rather than
    compiled into one alternation: with tens of thousands of patients a regex alternation costs
    ~0.1 s per report, a set lookup per word a few microseconds."""

    names: frozenset[str] = frozenset()  # lower case: matched wherever written capitalised
    usernames: frozenset[str] = frozenset()  # exact: logins are usually lower case

    def __call__(self, text: str | None) -> str | None:
        if not text:
            return text
        for _kind, pattern, token in _PATTERNS:
            text = pattern.sub(_replacer(token), text)
        if self.names or self.usernames:
            text = _WORD.sub(self._known, text)
        return text

    def _known(self, match: re.Match[str]) -> str:
        word = match.group(0)
        core = word.rstrip(".'’-")
        if core.endswith(("'s", "’s")):  # possessive: Harper's
            core = core[:-2]
        tail = word[len(core) :]
        if core in self.usernames:
            return NAME + tail
        # capitalised only: a patient called May must not take "may represent" with her
        if core[:1].isupper() and (
            core.lower() in self.names or any(p.lower() in self.names for p in core.split("-") if p)
        ):
            return NAME + tail
        return word


_WORD = re.compile(r"(?<![\w.@])[A-Za-z0-9][\w.'’-]*")


def _replacer(token: str):
    """Replace the first non-empty capturing group (the value after a kept label such as
    ``MRN:`` or ``Dr.``), or the whole match where the pattern has no group."""

    def sub(match: re.Match[str]) -> str:
        groups = [i for i in range(1, (match.re.groups or 0) + 1) if match.group(i)]
        if not groups:
            return token
        i = groups[0]
        value = match.group(i)
        if token == NAME and all(w.lower().strip(".,") in _NOT_NAMES for w in value.split()):
            return match.group(0)
        start, end = match.start(i) - match.start(), match.end(i) - match.start()
        whole = match.group(0)
        return whole[:start] + token + whole[end:]

    return sub


def name_parts(names: Iterable[str]) -> set[str]:
    """The components of person names as the system stores them (DICOM ``LAST^FIRST^MIDDLE``,
    "First Last", "Last, First", usernames), at least two letters, clinical words left out."""
    parts: set[str] = set()
    for name in names:
        for part in re.split(r"[\^,\s]+", name or ""):
            part = part.strip(".'’-_")
            if len(part) >= 2 and not part.isdigit() and part.lower() not in _NOT_NAMES:
                parts.add(part)
    return parts


def make_scrubber(known_names: Iterable[str] = (), *, usernames: Iterable[str] = ()) -> Scrubber:
    """A scrubber that also removes ``known_names`` (patients' and users' names, wherever written
    capitalised) and ``usernames`` (as written)."""
    logins = frozenset(u for u in usernames if len(u) >= 3 and u.lower() not in _NOT_NAMES)
    return Scrubber(frozenset(p.lower() for p in name_parts(known_names)), logins)


def scrub_text(text: str | None, *, known_names: Iterable[str] = (), usernames: Iterable[str] = ()) -> str | None:
    """Free text with names, dates, identifiers, phone numbers, addresses for mail and the web,
    and ages over 89 replaced by ``[NAME]``, ``[DATE]``, ``[ID]``, ``[UID]``, ``[PHONE]``,
    ``[EMAIL]``, ``[URL]`` and ``90+``."""
    return make_scrubber(known_names, usernames=usernames)(text)


# --- DICOM headers: the PS3.15 profile of ``reviewer.deid_profile`` applied -------------------------


def deidentify_dataset(ds, *, secret: bytes | None = None, scrubber: Scrubber | None = None):
    """A de-identified copy of a pydicom ``Dataset`` (the original is not changed): private
    tags removed, every attribute (nested sequences included) handled by ``profile_action``,
    and the de-identification recorded (PatientIdentityRemoved, DeidentificationMethod and its
    code sequence), as PS3.15 E.1.1 asks."""
    import copy

    from pydicom.dataset import Dataset

    key = secret if secret is not None else pseudonym_secret()
    clean = scrubber or make_scrubber(str(getattr(ds, "PatientName", "") or "").split("^"))
    patient_key = pseudonym("patient", getattr(ds, "PatientID", "") or getattr(ds, "StudyInstanceUID", ""), secret=key)
    out = copy.deepcopy(ds)

    def apply(d: Dataset) -> None:
        d.remove_private_tags()
        for elem in list(d):
            action = profile_action(elem.keyword or "", elem.VR)
            if action == "X":
                del d[elem.tag]
            elif action == "Z":
                elem.value = [] if elem.VR == "SQ" else ""
            elif action == "D":
                elem.value = patient_key if elem.VR != "SQ" else []
            elif action == "U" and elem.value:
                values = elem.value if elem.VM > 1 else [elem.value]
                new = [replacement_uid(str(v), secret=key) for v in values]
                elem.value = new if elem.VM > 1 else new[0]
            elif action == "C" and isinstance(elem.value, str):
                elem.value = clean(elem.value)
            elif elem.VR == "SQ":
                for item in elem.value:
                    apply(item)

    apply(out)
    if getattr(out, "file_meta", None) is not None and "MediaStorageSOPInstanceUID" in out.file_meta:
        out.file_meta.MediaStorageSOPInstanceUID = replacement_uid(
            str(out.file_meta.MediaStorageSOPInstanceUID), secret=key
        )
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = DEID_METHOD
    codes = []
    for value, meaning in DEID_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    out.DeidentificationMethodCodeSequence = codes
    return out


def site_scrubber() -> Scrubber:
    """The scrubber for this site's exports: every person name the site stores (patients'
    DICOM names, users' first and last names) and every username."""
    from django.contrib.auth import get_user_model

    from reviewer.models import Study

    names = list(Study.objects.exclude(patient_name="").values_list("patient_name", flat=True))
    usernames = []
    for username, first, last in get_user_model().objects.values_list("username", "first_name", "last_name"):
        names.extend([first, last])
        usernames.append(username)
    return make_scrubber(names, usernames=usernames)


__all__ = [
    "Scrubber",
    "deidentify_dataset",
    "make_scrubber",
    "pseudonym",
    "pseudonym_secret",
    "replacement_uid",
    "scrub_text",
    "site_scrubber",
]
