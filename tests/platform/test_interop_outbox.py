"""Outgoing messages of signed reports against real parts: Orthanc (report SR stored and read
back, forwarded by C-STORE to a dcmtk storescp registered as an Orthanc modality), a loopback
FHIR server and a loopback MLLP listener. Each destination is first down (the message is kept,
pending, with the error and the attempt count) and then up (the same row is delivered)."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pydicom
import pytest
from django.utils import timezone

from reviewer.integrations.outbox import send_message
from reviewer.integrations.report_sr import report_uids
from reviewer.integrations.sr import load_sr
from reviewer.models import OutboxMessage, StructuredReport
from reviewer.services import reports
from tests.dicom_factory import write_study
from tests.factories import DraftFactory, FindingFactory, StudyFactory, UserFactory
from tests.platform.test_drafting_sr import dciodvfy, upload

pytestmark = [pytest.mark.services, pytest.mark.django_db]

REPORT = (
    "CLINICAL HISTORY: Low back pain.\nTECHNIQUE: Sagittal T1, T2 and STIR.\nCOMPARISON: None.\n"
    "DISCS: L4-5 disc protrusion with moderate spinal canal stenosis.\n"
    "IMPRESSION: Moderate spinal canal stenosis at L4-5."
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def signed(tmp_path, empty_orthanc, orthanc_settings):  # type: ignore[no-untyped-def]
    """A study in Orthanc whose reader signed REPORT (the AI had the stenosis at L4-5, left)."""
    study_uid, files = write_study(tmp_path / "dcm")
    upload(empty_orthanc, files)
    study = StudyFactory(study_uid=study_uid, institution="Test Hospital")
    draft = DraftFactory(study=study, text=REPORT)
    FindingFactory(draft=draft, condition="canal_stenosis", probability=0.9, present=True, level="L4-5", side="left")
    reader = UserFactory(role="radiologist", first_name="Ada", last_name="Reader")
    revision = reports.save_revision(study=study, author=reader, text=REPORT, parent_id=None)
    reports.sign_review(study=study, reader=reader, radpeer="1")
    return {"study": study, "reader": reader, "revision": revision, "orthanc": empty_orthanc}


def due_now(row: OutboxMessage) -> None:
    OutboxMessage.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_report_sr_is_stored_verified_and_an_addendum_references_it(signed, tmp_path, settings):  # type: ignore[no-untyped-def]
    study, reader, revision = signed["study"], signed["reader"], signed["revision"]
    row = OutboxMessage.objects.get(revision=revision, kind=OutboxMessage.Kind.SR_STORE)
    assert row.state == OutboxMessage.State.PENDING
    assert row.attempts == 0

    # Orthanc down: the message is kept with its error and a later attempt time
    real_url = settings.ORTHANC_URL
    settings.ORTHANC_URL = f"http://127.0.0.1:{free_port()}"
    row = send_message(message_id=row.pk)
    assert (row.state, row.attempts) == (OutboxMessage.State.PENDING, 1)
    assert row.last_error
    assert row.next_attempt_at > timezone.now()
    assert send_message(message_id=row.pk).attempts == 1, "not due yet: no second attempt"
    settings.ORTHANC_URL = real_url
    due_now(row)
    row = send_message(message_id=row.pk)
    assert (row.state, row.attempts, row.last_error) == (OutboxMessage.State.SENT, 2, "")

    series_uid, sop_uid = report_uids(revision)
    ds = load_sr(study.study_uid, series_uid, sop_uid)
    assert ds.SOPClassUID == pydicom.uid.EnhancedSRStorage
    assert (ds.CompletionFlag, ds.VerificationFlag) == ("COMPLETE", "VERIFIED")
    assert str(ds.VerifyingObserverSequence[0].VerifyingObserverName) == "Reader^Ada"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "2000"
    assert ds.ConceptNameCodeSequence[0].CodeValue == "18748-4"
    sections = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in ds.ContentSequence if i.ValueType == "CONTAINER"}
    assert list(sections) == ["History", "Current Procedure Descriptions", "Prior Procedure Descriptions",
                              "Findings", "Impressions"]  # fmt: skip
    assert sections["Impressions"].ContentSequence[0].TextValue == "Moderate spinal canal stenosis at L4-5."
    coded = [i.ConceptCodeSequence[0] for i in sections["Findings"].ContentSequence if i.ValueType == "CODE"]
    # SNOMED CT where the table has a code, else the private condition code ("protrusion": herniation)
    assert [(c.CodeValue, c.CodingSchemeDesignator) for c in coded] == [("76107001", "SCT"), ("SR04", "99SPINEREVIEW")]
    result = dciodvfy(ds, tmp_path / "report.dcm")
    assert result.returncode == 0, result.stderr
    assert "Error" not in result.stderr, result.stderr
    assert StructuredReport.objects.get(sop_instance_uid=sop_uid).source == StructuredReport.Source.REPORT

    # an addendum is a new instance whose predecessor is the signed one; the first stays
    amended = REPORT + "\nADDENDUM: also mild left foraminal narrowing at L4-5."
    addendum = reports.save_revision(study=study, author=reader, text=amended, parent_id=revision.pk,
                                     reason="foramen missed")  # fmt: skip
    row2 = send_message(message_id=OutboxMessage.objects.get(revision=addendum, kind="sr_store").pk)
    assert row2.state == OutboxMessage.State.SENT
    ds2 = load_sr(study.study_uid, *report_uids(addendum))
    pre = ds2.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert pre.ReferencedSOPInstanceUID == sop_uid
    assert "Addendum" in [i.ConceptNameCodeSequence[0].CodeMeaning for i in ds2.ContentSequence]
    assert load_sr(study.study_uid, series_uid, sop_uid).SOPInstanceUID == sop_uid, "the signed SR is kept"
    assert dciodvfy(ds2, tmp_path / "addendum.dcm").returncode == 0


def test_report_sr_is_forwarded_by_c_store_once_the_destination_is_up(signed, tmp_path, settings):  # type: ignore[no-untyped-def]
    client, revision = signed["orthanc"], signed["revision"]
    port, received = free_port(), tmp_path / "storescp"
    received.mkdir()
    assert client.put("/modalities/INTEROPSCP", json=["INTEROPSCP", "127.0.0.1", port]).status_code == 200
    settings.SPINEREVIEW_SR_FORWARD_MODALITIES = ["INTEROPSCP"]
    from reviewer.integrations.outbox import enqueue_report_messages

    rows = {r.kind: r for r in enqueue_report_messages(revision=revision)}
    forward = rows[OutboxMessage.Kind.SR_FORWARD]
    assert forward.destination == "INTEROPSCP"
    # before its SR is stored the forward waits; then storescp is down: kept, pending
    assert send_message(message_id=forward.pk).state == OutboxMessage.State.PENDING
    assert send_message(message_id=rows[OutboxMessage.Kind.SR_STORE].pk).state == OutboxMessage.State.SENT
    due_now(forward)
    forward = send_message(message_id=forward.pk)
    assert (forward.state, forward.attempts) == (OutboxMessage.State.PENDING, 2)
    assert "INTEROPSCP" in forward.last_error
    scp = subprocess.Popen(["storescp", "-aet", "INTEROPSCP", "-od", str(received), "+xa", str(port)])
    try:
        time.sleep(1.0)
        due_now(forward)
        forward = send_message(message_id=forward.pk)
        assert forward.state == OutboxMessage.State.SENT, forward.last_error
    finally:
        scp.terminate()
        scp.wait(timeout=10)
        client.delete("/modalities/INTEROPSCP")
    files = list(received.iterdir())
    assert len(files) == 1
    assert pydicom.dcmread(files[0]).SOPInstanceUID == report_uids(revision)[1]


class _Fhir(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        answer = json.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


def test_fhir_push_kept_while_the_server_is_down_then_delivered(signed, settings):  # type: ignore[no-untyped-def]
    from fhir.resources.R4B.bundle import Bundle

    from reviewer.integrations.outbox import enqueue_report_messages

    port = free_port()
    settings.SPINEREVIEW_FHIR_URL = f"http://127.0.0.1:{port}/fhir"
    rows = {r.kind: r for r in enqueue_report_messages(revision=signed["revision"])}
    push = send_message(message_id=rows[OutboxMessage.Kind.FHIR_PUSH].pk)
    assert (push.state, push.attempts) == (OutboxMessage.State.PENDING, 1)
    assert "unreachable" in push.last_error
    _Fhir.received = []
    server = ThreadingHTTPServer(("127.0.0.1", port), _Fhir)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        due_now(push)
        push = send_message(message_id=push.pk)
    finally:
        server.shutdown()
        server.server_close()
    assert push.state == OutboxMessage.State.SENT, push.last_error
    assert len(_Fhir.received) == 1
    bundle = Bundle.model_validate(_Fhir.received[0])
    assert bundle.type == "transaction"
    kinds = [e.resource.get_resource_type() for e in bundle.entry]
    assert kinds == ["DiagnosticReport", "Observation", "Observation", "ImagingStudy", "Patient"]
    report = bundle.entry[0].resource
    assert report.status == "final"
    raw_form = _Fhir.received[0]["entry"][0]["resource"]["presentedForm"][0]
    assert base64.b64decode(raw_form["data"]).decode() == REPORT
    obs = bundle.entry[1].resource
    assert obs.code.coding[0].code == "76107001"
    assert obs.bodySite.coding[0].code == "84020006"  # L4/L5 disc
    assert obs.component[0].valueCodeableConcept.coding[0].code == "7771000"  # left
    herniation = bundle.entry[2].resource
    assert herniation.code.coding is None  # no SNOMED code in the table: text only
    assert herniation.code.text == "Disc herniation (protrusion/extrusion)"
    assert bundle.entry[4].resource.identifier[0].value == signed["study"].patient_id
    assert all(e.request.ifNoneExist for e in bundle.entry[:4]), "retries create nothing twice"


def _mllp_listener(port: int, received: list[str], codes: list[str]) -> socket.socket:
    """A one-thread MLLP server that answers the n-th message with an ACK whose MSA-1 is codes[n]."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while b"\x1c\r" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                message = buf[1 : buf.index(b"\x1c\r")].decode()
                received.append(message)
                code = codes[len(received) - 1]
                control = message.split("\r")[0].split("|")[9]
                ack = (
                    f"MSH|^~\\&|RIS||SPINEREVIEW||20260101000000||ACK^R01^ACK|A{control}|P|2.5\rMSA|{code}|{control}\r"
                )
                conn.sendall(b"\x0b" + ack.encode() + b"\x1c\r")

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_hl7_oru_is_acknowledged_after_an_outage_and_a_refusal(signed, settings):  # type: ignore[no-untyped-def]
    from hl7apy.parser import parse_message

    from reviewer.integrations.outbox import enqueue_report_messages

    port = free_port()
    settings.SPINEREVIEW_HL7_HOST, settings.SPINEREVIEW_HL7_PORT = "127.0.0.1", port
    rows = {r.kind: r for r in enqueue_report_messages(revision=signed["revision"])}
    oru = send_message(message_id=rows[OutboxMessage.Kind.HL7_ORU].pk)
    assert (oru.state, oru.attempts) == (OutboxMessage.State.PENDING, 1)
    received: list[str] = []
    srv = _mllp_listener(port, received, ["AE", "AA"])  # the RIS refuses once, then accepts
    try:
        due_now(oru)
        oru = send_message(message_id=oru.pk)
        assert (oru.state, oru.attempts) == (OutboxMessage.State.PENDING, 2)
        assert "MSA AE" in oru.last_error
        due_now(oru)
        oru = send_message(message_id=oru.pk)
    finally:
        srv.close()
    assert oru.state == OutboxMessage.State.SENT, oru.last_error
    assert oru.response == {"ack": "AA", "control_id": f"SR{oru.pk}"}
    assert received[0] == received[1], "a retry sends the same message (same control id)"
    msg = parse_message(received[1], find_groups=False)
    assert msg.msh.msh_9.value == "ORU^R01^ORU_R01"
    assert msg.pid.pid_3.value == signed["study"].patient_id
    assert msg.obr.obr_25.value == "F"
    texts = [s.obx_5.value for s in msg.children if s.name == "OBX" and s.obx_2.value == "TX"]
    assert texts[-1] == "IMPRESSION: Moderate spinal canal stenosis at L4-5."
    coded = [s.obx_5.value for s in msg.children if s.name == "OBX" and s.obx_2.value == "CE"]
    assert coded == ["76107001^Spinal stenosis^SCT", "^Disc herniation (protrusion/extrusion)"]


def test_attempts_exhausted_fail_and_an_admin_resend_delivers(signed, settings):  # type: ignore[no-untyped-def]
    from reviewer.integrations.outbox import resend

    settings.SPINEREVIEW_OUTBOX_MAX_ATTEMPTS = 2
    real_url = settings.ORTHANC_URL
    settings.ORTHANC_URL = f"http://127.0.0.1:{free_port()}"
    row = OutboxMessage.objects.get(revision=signed["revision"], kind="sr_store")
    send_message(message_id=row.pk)
    due_now(row)
    row = send_message(message_id=row.pk)
    assert (row.state, row.attempts) == (OutboxMessage.State.FAILED, 2)
    settings.ORTHANC_URL = real_url
    assert send_message(message_id=row.pk).state == OutboxMessage.State.FAILED, "failed rows wait for an admin"
    admin = UserFactory(role="admin")
    assert resend(message_ids=[row.pk], actor=admin) == 1
    row = send_message(message_id=row.pk)
    assert (row.state, row.attempts) == (OutboxMessage.State.SENT, 3)
