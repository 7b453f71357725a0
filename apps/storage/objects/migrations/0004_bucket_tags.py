# The bucket's tags (issue 22): the field is in the model since the schema commit, its migration was missing.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('storage_objects', '0003_account_access'),
    ]

    operations = [
        migrations.AddField(
            model_name='bucket',
            name='tags',
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
