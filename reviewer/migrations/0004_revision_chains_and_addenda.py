# One revision chain per reader and study; addenda after sign-off.

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reviewer", "0003_review_workflow_and_sr"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="reportrevision",
            name="unique_revision_number",
        ),
        migrations.AlterModelOptions(
            name="reportrevision",
            options={"ordering": ["study", "author", "number"]},
        ),
        migrations.AddField(
            model_name="reportrevision",
            name="is_addendum",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="reportrevision",
            name="addendum_reason",
            field=models.TextField(blank=True),
        ),
        migrations.AddConstraint(
            model_name="reportrevision",
            constraint=models.UniqueConstraint(
                fields=("study", "author", "number"), name="unique_revision_number_per_chain"
            ),
        ),
        migrations.AddConstraint(
            model_name="reportrevision",
            constraint=models.UniqueConstraint(
                condition=models.Q(("is_conflict", False)),
                fields=("parent",),
                name="one_accepted_child_per_revision",
            ),
        ),
        migrations.AddConstraint(
            model_name="reportrevision",
            constraint=models.UniqueConstraint(
                condition=models.Q(("is_conflict", False), ("parent__isnull", True)),
                fields=("study", "author"),
                name="one_root_per_chain",
            ),
        ),
        migrations.AddConstraint(
            model_name="reportrevision",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("is_addendum", False), models.Q(("addendum_reason", ""), _negated=True), _connector="OR"
                ),
                name="addendum_has_reason",
            ),
        ),
    ]
