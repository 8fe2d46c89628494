"""The students table as an upstream asset: the ``students`` snapshot, its checks and the database it reads.

A sync that reads students names ``STUDENTS`` as its upstream (``SyncSpec.upstream``) and needs no variable but
``STUDENTS_DATABASE_URL`` and its own; the code location defines the asset once, however many syncs read it.
"""

from sync_pipelines.defs.shared.upstream import Upstream
from sync_pipelines.defs.students.assets import students
from sync_pipelines.defs.students.checks import students_unique_ids, students_unique_rt_user_ids
from sync_pipelines.defs.students.resources import SETTING, students_database

STUDENTS = Upstream(
    asset=students,
    checks=(students_unique_ids, students_unique_rt_user_ids),
    resources={"students_database": students_database()},
    required_variables=(SETTING,),
)
