"""Bakaláři -> EduRPG: classes, subjects, teachers, students and enrollments, upserted without ever deleting."""
