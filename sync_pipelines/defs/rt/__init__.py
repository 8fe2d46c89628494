"""Request Tracker: the students' grade and student ID kept in RT user custom fields."""
