"""factory_boy factories for the review data model."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from reviewer import models


class UserFactory(factory.django.DjangoModelFactory):
    """``UserFactory(role="annotator")``; role is a group name, or "admin" for staff."""

    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")

    @classmethod
    def _create(cls, model_class, *args, role: str = "radiologist", **kwargs):  # type: ignore[no-untyped-def]
        user = model_class.objects.create_user(*args, password="pw", **kwargs)
        if role == "admin":
            user.is_staff = user.is_superuser = True
            user.save()
        else:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        return user


class StudyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Study

    study_uid = factory.Sequence(lambda n: f"1.2.826.0.1.3680043.10.999.{n}")
    orthanc_id = factory.Sequence(lambda n: f"orthanc-{n:08d}")
    patient_id = factory.Sequence(lambda n: f"SYN-{n:04d}")
    patient_name = factory.Sequence(lambda n: f"SYNTHETIC^PATIENT{n}")
    description = "MRI LUMBAR SPINE"


class SeriesFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Series

    study = factory.SubFactory(StudyFactory)
    series_uid = factory.Sequence(lambda n: f"1.2.826.0.1.3680043.10.998.{n}")
    orthanc_id = factory.Sequence(lambda n: f"orthanc-series-{n:08d}")
    description = "SAG T2 FSE"
    modality = "MR"
    sequence_class = "T2"
    plane = "sagittal"
    instance_count = 15


class DraftJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.DraftJob

    study = factory.SubFactory(StudyFactory)
    pipeline_version = "test-pipeline@1"
    state = models.DraftJob.State.DONE


class DraftFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Draft

    study = factory.SubFactory(StudyFactory)
    job = factory.SubFactory(DraftJobFactory, study=factory.SelfAttribute("..study"))
    text = "IMPRESSION:\n1. Mild disc bulge at L4-5 without stenosis."
    sections = factory.LazyFunction(lambda: {"impression": "1. Mild disc bulge at L4-5 without stenosis."})


class FindingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Finding

    draft = factory.SubFactory(DraftFactory)
    condition = "disc_herniation"
    probability = 0.8
    present = True
    level = "L4-5"
