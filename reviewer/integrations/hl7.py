"""The signed report as an HL7 v2.5 ORU^R01 sent over MLLP to a RIS, which must acknowledge it.

One message per signed report or addendum: MSH, PID, OBR (the study; result status F, or C for
an addendum), one OBX (TX) per report line, and one OBX (CE) per confirmed finding (SNOMED CT
where ``codes.CONDITION_SNOMED`` has a code, else text; level and side are in the text). The message
control id is the outbox row's, so a RIS sees a retry as the same message. The answer must be an
ACK with MSA-1 AA (or CA); AE/AR and silence are failures the outbox retries.
"""

from __future__ import annotations

import socket
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from reviewer.integrations.codes import CONDITION_SNOMED
from reviewer.integrations.content import SignedReport

START, END = b"\x0b", b"\x1c\x0d"  # MLLP framing


class Hl7SendError(RuntimeError):
    """No acknowledgement, or a negative one (kept in the outbox and retried)."""


def escape(value: str) -> str:
    """HL7 v2 escaping of the delimiters (the escape character first)."""
    out = value.replace("\\", "\\E\\")
    for char, seq in (("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")):
        out = out.replace(char, seq)
    return out.replace("\r", " ").replace("\n", " ")


def pid_3(patient_id: str, issuer: str) -> str:
    """PID-3 (CX) as ``id^^^issuer``: the issuer (IssuerOfPatientID) is the assigning authority,
    CX.4, because one PatientID from two hospitals can be two people and a RIS must be able to
    tell them apart. Without an issuer the id goes alone, as received."""
    if not patient_id:
        return ""
    return f"{escape(patient_id)}^^^{escape(issuer)}" if issuer else escape(patient_id)


def build_oru(report: SignedReport, *, control_id: str, created: datetime | None = None) -> str:
    """The ORU^R01 message (ER7, segments separated by CR).

    MSH-7 is ``created``, the time the message was queued, not the time of the attempt: a retry
    after an outage must send byte-for-byte the same message under the same control id, so the
    RIS can recognise a duplicate."""
    study = report.study
    now = (created or timezone.now()).strftime("%Y%m%d%H%M%S")
    result_status = "C" if report.is_addendum else "F"
    family, _, given = (study.patient_name or "").partition("^")
    reader = report.reader_name.split(" ", 1)
    # OBR-32 (NDL): its first component is a CNN whose parts are subcomponents (&)
    reader_xcn = f"&{escape(reader[-1])}&{escape(reader[0])}" if len(reader) == 2 else f"&{escape(reader[0])}"
    segments = [
        "|".join([
            "MSH", "^~\\&", escape(settings.SPINEREVIEW_HL7_SENDING_APPLICATION),
            escape(settings.SPINEREVIEW_HL7_SENDING_FACILITY), escape(settings.SPINEREVIEW_HL7_RECEIVING_APPLICATION),
            escape(settings.SPINEREVIEW_HL7_RECEIVING_FACILITY), now, "", "ORU^R01^ORU_R01", control_id, "P", "2.5",
        ]),
        "|".join(["PID", "1", "", pid_3(study.patient_id, study.patient_id_issuer), "",
                  f"{escape(family)}^{escape(given.replace('^', ' '))}"]),
        "|".join([
            "OBR", "1", "", escape(study.accession_number or study.study_uid),
            "18748-4^Diagnostic imaging study^LN", "", "",
            study.study_date.strftime("%Y%m%d") if study.study_date else "",
            *[""] * 14, report.signed_at.strftime("%Y%m%d%H%M%S"), "", "MR", result_status,
            *[""] * 6, reader_xcn,
        ]),
    ]  # fmt: skip
    n = 0
    lines = report.text.splitlines() or [""]
    if report.is_addendum:
        lines = [f"ADDENDUM: {report.addendum_reason}", *lines]
    for line in lines:
        n += 1
        segments.append(f"OBX|{n}|TX|18748-4^Diagnostic imaging study^LN|1|{escape(line)}||||||{result_status}")
    for f in report.findings:
        n += 1
        snomed = CONDITION_SNOMED.get(f.condition)
        value = f"{snomed.code}^{escape(snomed.display)}^SCT" if snomed else f"^{escape(f.name)}"
        segments.append(f"OBX|{n}|CE|59776-5^Procedure findings^LN|{n}|{value}||||||{result_status}")
    return "\r".join(segments) + "\r"


def send_mllp(message: str, *, host: str, port: int, timeout: float) -> str:
    """Send one MLLP-framed message and return the framed answer's text."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(START + message.encode("utf-8") + END)
            buf = b""
            while END not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except OSError as exc:
        raise Hl7SendError(f"MLLP {host}:{port}: {exc}") from exc
    if not buf.startswith(START) or END not in buf:
        raise Hl7SendError(f"MLLP {host}:{port}: no acknowledgement (got {len(buf)} bytes)")
    return buf[1 : buf.index(END)].decode("utf-8", errors="replace")


def check_ack(answer: str, *, control_id: str) -> dict:
    """The ACK's MSA fields; raise Hl7SendError unless it accepts ``control_id``."""
    from hl7apy.parser import parse_message

    try:
        ack = parse_message(answer.replace("\n", "\r"), find_groups=False)
        code, acked = ack.msa.msa_1.value, ack.msa.msa_2.value
    except Exception as exc:  # hl7apy raises its own error family for malformed messages
        raise Hl7SendError(f"unreadable acknowledgement: {exc}: {answer[:200]!r}") from exc
    if acked != control_id:
        raise Hl7SendError(f"acknowledgement of message {acked!r}, not {control_id!r}")
    if code not in ("AA", "CA"):
        text = ack.msa.msa_3.value if ack.msa.msa_3 else ""
        raise Hl7SendError(f"RIS refused the message: MSA {code} {text}".strip())
    return {"ack": code, "control_id": acked}


def send_report(
    report: SignedReport, *, control_id: str, host: str, port: int, created: datetime | None = None
) -> dict:
    message = build_oru(report, control_id=control_id, created=created)
    answer = send_mllp(message, host=host, port=port, timeout=settings.SPINEREVIEW_INTEROP_TIMEOUT_S)
    return check_ack(answer, control_id=control_id)
